"""Confine data paths to the configured data roots."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from aijobs import errors


def resolve_data_path(data_path: str, roots: list[Path], *, must_exist: bool = True) -> Path:
    """The real path `data_path` names inside one of `roots`, or errors.InvalidDataPath.

    Accepted: an absolute path inside a root; a path relative to the first root; and a
    deployment-style absolute path whose first component is a root's directory name
    (``/data/x.csv`` with the root ``./data``), the way the API reference's examples are
    written.
    Symlinks are resolved first, so a link that leaves the root is refused.
    """
    if not roots:
        raise errors.InvalidDataPath("no data roots are configured (AIJOBS_DATA_ROOTS)")
    if not data_path or "\x00" in data_path:
        raise errors.InvalidDataPath("data_path is empty or contains a NUL byte")
    raw = Path(data_path)
    candidates: list[Path] = []
    if raw.is_absolute():
        candidates.append(raw)
        parts = PurePosixPath(data_path).parts
        if len(parts) > 1:
            candidates += [root / Path(*parts[2:]) for root in roots if root.name == parts[1]]
    else:
        candidates.append(roots[0] / raw)
    for candidate in candidates:
        real = candidate.resolve()
        root = next((r for r in roots if real == r or real.is_relative_to(r)), None)
        if root is None:
            continue
        if must_exist and not real.exists():
            raise errors.InvalidDataPath(f"data_path {data_path!r} does not exist")
        return real
    raise errors.InvalidDataPath(
        f"data_path {data_path!r} is outside the data roots ("
        + ", ".join(str(r) for r in roots)
        + ")"
    )
