"""Declared parameters, checked once: the validator every runtime uses for hyperparameters and
inference parameters.

Each model type accepts a fixed set of names; an unknown name, a value of the wrong type or out
of range fails the job with one message that names every bad key and says what it accepts.
Framework-free, so each runtime checks a job before importing anything heavy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aijobs import errors


@dataclass(frozen=True)
class Param:
    kind: type  # int, float, str or bool; a float parameter also takes an integer
    default: Any
    rule: str = ""  # what a valid value is, in words ("an integer >= 1")
    check: Callable[[Any], bool] | None = None
    nullable: bool = False  # null means "the default"


def integer(low: int, high: int | None = None) -> tuple[str, Callable[[Any], bool]]:
    if high is None:
        return f"an integer >= {low}", lambda v: v >= low
    return f"an integer between {low} and {high}", lambda v: low <= v <= high


def number(
    low: float, high: float, *, low_open: bool = False, high_open: bool = False
) -> tuple[str, Callable[[Any], bool]]:
    left, right = ("(" if low_open else "["), (")" if high_open else "]")

    def check(v: Any) -> bool:
        above = v > low if low_open else v >= low
        below = v < high if high_open else v <= high
        return bool(above and below)

    return f"a number in {left}{low:g}, {high:g}{right}", check


def one_of(*values: Any) -> tuple[str, Callable[[Any], bool]]:
    return "one of " + ", ".join(repr(v) for v in values), lambda v: v in values


def param(
    kind: type,
    default: Any,
    spec: tuple[str, Callable[[Any], bool]] | None = None,
    *,
    nullable: bool = False,
) -> Param:
    rule, check = spec if spec is not None else ("", None)
    return Param(kind, default, rule, check, nullable)


SEED_MAX = 2**32 - 1


def _type_name(kind: type) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}[kind]


def _coerce(name: str, value: Any, p: Param, what: str) -> tuple[Any, str | None]:
    """(value, None) when valid, else (None, the message for this key)."""
    if value is None:
        if p.nullable:
            return p.default, None
        return None, f"{what} {name!r} must be {p.rule or _type_name(p.kind)}, got null"
    ok_type = (
        isinstance(value, p.kind) and not (p.kind is not bool and isinstance(value, bool))
    ) or (p.kind is float and isinstance(value, int) and not isinstance(value, bool))
    if not ok_type:
        shown = repr(value) if not isinstance(value, str) else f"the string {value!r}"
        return None, f"{what} {name!r} must be {_type_name(p.kind)}, got {shown}"
    if p.kind is float:
        value = float(value)
    if p.check is not None and not p.check(value):
        return None, f"{what} {name!r} must be {p.rule}, got {value!r}"
    return value, None


def validate(
    given: Mapping[str, Any],
    accepted: Mapping[str, Param],
    defaults: Mapping[str, Any] | None = None,
    *,
    what: str = "hyperparameter",
    context: str = "",
    ceilings: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Every accepted name with its value (given or default); JobFailure naming each bad key.

    `ceilings` ({name: largest value}) narrow a numeric parameter's range further: the
    operator's limits (AIJOBS_HYPERPARAMETER_CEILINGS), checked where a job is submitted."""
    if not isinstance(given, Mapping):
        raise errors.JobFailure(f"{what}s must be a JSON object, got {type(given).__name__}")
    problems: list[str] = []
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        problems.append(
            f"unknown {what}{plural}{context}: {', '.join(unknown)} "
            f"(accepted: {', '.join(sorted(accepted))})"
        )
    resolved: dict[str, Any] = {}
    for name, p in accepted.items():
        default = (defaults or {}).get(name, p.default)
        if name not in given:
            resolved[name] = default
            continue
        value, problem = _coerce(name, given[name], p, what)
        ceiling = (ceilings or {}).get(name)
        if not problem and p.kind in (int, float) and ceiling is not None and value > ceiling:
            problem = f"{what} {name!r} must be at most {ceiling} on this server, got {value!r}"
        if problem:
            problems.append(problem)
        resolved[name] = default if value is None else value
    if problems:
        raise errors.JobFailure("; ".join(problems))
    return resolved
