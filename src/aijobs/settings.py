"""One Settings object (environment variables prefixed ``AIJOBS_``), built once and passed down."""

from __future__ import annotations

import ipaddress
import os
import re
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from aijobs.jobs import LOG_KEEP_CHARS

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Rate(NamedTuple):
    limit: int
    window_seconds: float


_UNITS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}
_RATE = re.compile(r"^\s*(\d{1,9})\s*/\s*(\d{1,6})?\s*(second|minute|hour|day)s?\s*$", re.I)
DEFAULT_CEILINGS = (
    "epochs=1000,batch_size=4096,image_size=512,num_layers=48,hidden_size=4096,"
    "max_length=4096,n_estimators=2000,max_depth=1000,max_iter=100000"
)


def parse_rate(text: str) -> Rate | None:
    """'100/minute' (also '10/second', '1000/hour', '5/2hours') as a Rate; '' is no limit."""
    if not text.strip():
        return None
    match = _RATE.match(text)
    if match is None or int(match[1]) < 1:
        raise ValueError(
            f"{text!r} is not a rate: write N/unit or N/M units, e.g. 100/minute or 20/10seconds"
        )
    count = int(match[2] or 1)
    return Rate(int(match[1]), max(1, count) * _UNITS[match[3].lower()])


def parse_networks(text: str) -> list[IPNetwork]:
    """'10.0.0.1, 192.168.0.0/16, ::1' as networks; ValueError naming a bad entry."""
    return [ipaddress.ip_network(e.strip(), strict=False) for e in text.split(",") if e.strip()]


def parse_ceilings(text: str) -> dict[str, int]:
    """'epochs=1000,n_estimators=2000' as {name: ceiling}."""
    out: dict[str, int] = {}
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        name, sep, value = (part.strip() for part in entry.partition("="))
        if not sep or not name or not value.isdigit():
            raise ValueError(f"{entry!r} is not name=integer")
        out[name] = int(value)
    return out


ENV_PREFIX = "AIJOBS_"


def variable(key: str) -> str:
    """The environment variable of a setting: `key` is its field's name, or one of its aliases
    (which pydantic reports for a field that has them)."""
    return key if key.startswith(ENV_PREFIX) else ENV_PREFIX + key.upper()


class Settings(BaseSettings):
    # populate_by_name: a field with old and new variable names is still set by its field name.
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", populate_by_name=True)

    home: Path = Field(Path("./var"), description="State directory: store, models, job logs.")
    store_url: str = Field(
        "",
        description="Job store URL: sqlite:///PATH, redis://HOST:PORT/DB, rediss://... or "
        "unix:///PATH?db=N; empty means the SQLite file aijobs.db in home.",
    )
    data_roots: str = Field(
        "./data",
        description="Data roots, separated by ':' as in PATH; every data path must lie in one.",
    )
    host: str = Field("127.0.0.1", description="Where `aijobs serve` and `aijobs up` listen.")
    port: int = Field(8000, description="The API's port (`aijobs serve`, `aijobs up`).")
    lease_seconds: float = Field(
        30.0, gt=0, description="How long a claim lasts without renewal; renewed every third of it."
    )
    max_attempts: int = Field(
        3, ge=1, description="Runs a job may start (rescues and retries count) before it fails."
    )
    job_timeout_seconds: float = Field(
        3600.0, gt=0, description="Default job time limit, when a job sets no timeout_seconds."
    )
    kill_grace_seconds: float = Field(
        5.0, ge=0, description="SIGTERM to SIGKILL delay when a job's child is stopped."
    )
    shutdown_grace_seconds: float = Field(
        30.0, ge=0, description="How long a stopping worker lets its running jobs finish."
    )
    worker_ttl_seconds: float = Field(
        15.0, gt=0, description="A worker not seen for this long counts as gone."
    )
    max_body_bytes: int = Field(
        1_048_576, gt=0, description="Largest accepted request body (413 above)."
    )
    inference_cache_size: int = Field(8, ge=1, description="Models kept loaded per worker.")
    inference_prefetch: int = Field(
        16,
        ge=0,
        description="Inference jobs a worker holds beyond its training slots (claimed and "
        "pipelined together).",
    )
    retry_backoff_seconds: float = Field(
        2.0,
        ge=0,
        description="A job retried after a crash, a lost lease or an outage waits about this "
        "long before it can run again, doubling with each attempt (jittered; 0: no wait).",
    )
    retry_backoff_max_seconds: float = Field(
        300.0, ge=0, description="The longest a retried job waits (AIJOBS_RETRY_BACKOFF_SECONDS)."
    )
    allow_missing_gpu: bool = Field(False, description="Let GPU queues run without CUDA (tests).")
    allow_downloads: bool = Field(
        True,
        description="Let training jobs fetch a `pretrained_model` named by its Hugging Face Hub "
        "id into the standard cache (HF_HOME); false (or HF_HUB_OFFLINE=1) keeps workers off the "
        "network, with only the cache and the data roots to start from.",
    )
    queue_python: str = Field(
        "",
        description="Interpreter per queue for `aijobs up`, 'queue=/path/to/python,...': a "
        "queue whose framework lives in another environment (CUDA builds of torch and TF).",
    )
    # Who may call the API (docs/security.md)
    auth: str = Field(
        "",
        pattern=r"^(|required|off)$",
        description="`required` or `off`; empty: off while AIJOBS_HOST is a loopback address, "
        "required otherwise.",
    )
    allowed_hosts: str = Field(
        "",
        description="Host headers the API answers, separated by ','; `*` for any. Empty: the "
        "loopback names while AIJOBS_HOST is a loopback address, any otherwise.",
    )
    jwt_secret: str = Field("", description="Accept JWTs signed with this HS256 secret.")
    oidc_issuer: str = Field(
        "",
        description="Accept JWTs of this OpenID Connect issuer (its `iss`; signing keys from its "
        "discovered jwks_uri unless AIJOBS_JWT_JWKS_URL is set).",
    )
    jwt_jwks_url: str = Field(
        "", description="Accept RS256/ES256 JWTs signed by a key of this JWKS."
    )
    jwt_jwks_refresh_seconds: float = Field(
        30.0,
        ge=0,
        description="Least time between two JWKS fetches forced by an unknown `kid` (the set is "
        "also fetched again every 5 minutes).",
    )
    jwt_audience: str = Field("", description="A JWT's `aud` must name this (empty: not checked).")
    jwt_admin_claim: str = Field(
        "scope=aijobs:admin",
        pattern=r"^[^=]+=.+$",
        description="CLAIM=VALUE: a JWT whose CLAIM (a space-separated string or a list) holds "
        "VALUE is an admin's, e.g. `roles=admin`.",
    )
    metrics_token: str = Field(
        "",
        description="With auth on, GET /metrics also accepts `Authorization: Bearer` this token "
        "(a scraper's, instead of an admin's key). Empty: admins only.",
    )
    # Redis store (AIJOBS_STORE_URL=redis://, rediss:// or unix://)
    redis_prefix: str = Field(
        "aijobs",
        min_length=1,
        pattern=r"^[^{}]+$",
        description="Key prefix (and Cluster hash tag): deployments sharing a Redis differ here.",
    )
    redis_pool_size: int = Field(
        50,
        ge=8,
        description="Connections per process to Redis; up to four are kept for the job-end "
        "subscription and the submit, wait and finish lanes.",
    )
    redis_socket_timeout: float = Field(5.0, gt=0, description="Redis read/write timeout (s).")
    redis_connect_timeout: float = Field(2.0, gt=0, description="Redis connect timeout (s).")
    retain_jobs: int = Field(
        100_000,
        ge=0,
        validation_alias=AliasChoices("AIJOBS_RETAIN_JOBS", "AIJOBS_REDIS_RETAIN_JOBS"),
        description="Finished jobs kept, newest first (0: no limit), on either store. "
        "AIJOBS_REDIS_RETAIN_JOBS is its former name.",
    )
    retain_seconds: float = Field(
        30 * 86400.0,
        ge=0,
        validation_alias=AliasChoices("AIJOBS_RETAIN_SECONDS", "AIJOBS_REDIS_RETAIN_SECONDS"),
        description="How long finished jobs are kept (0: no limit), on either store. "
        "AIJOBS_REDIS_RETAIN_SECONDS is its former name.",
    )
    retain_models_seconds: float = Field(
        0.0,
        ge=0,
        description="A model neither trained nor used by a submitted inference job for this "
        "long is forgotten, and its files deleted where the API can reach them (0: keep "
        "every model), on either store.",
    )
    log_keep_chars: int = Field(
        LOG_KEEP_CHARS,
        ge=1024,
        le=16_777_216,
        description="Characters of a job's log the store keeps, the tail (its total length is "
        "kept too, so log offsets stay absolute). A worker sends its jobs' new output with "
        "every lease renewal, so the log is readable while the job runs.",
    )
    events_poll_seconds: float = Field(
        0.5,
        gt=0,
        le=10,
        description="How often GET /jobs/{id}/events reads a running job for new events (its "
        "end is seen at once).",
    )
    events_heartbeat_seconds: float = Field(
        15.0,
        gt=0,
        le=300,
        description="A comment line on an idle event stream this often, so that proxies keep "
        "it open.",
    )
    # Limits (docs/security.md)
    rate_limit_submit: str = Field(
        "",
        description="Submissions and other writes per caller (principal, else client address), "
        "e.g. 100/minute; empty: no limit. Shared by every API process through the store.",
    )
    rate_limit_read: str = Field(
        "", description="Reads per caller, e.g. 1000/minute; empty: no limit (/health is free)."
    )
    trusted_proxies: str = Field(
        "",
        description="Addresses or networks (comma-separated) of reverse proxies whose "
        "X-Forwarded-For names the client; from any other peer the header is ignored.",
    )
    max_pending_per_queue: int = Field(
        0,
        ge=0,
        description="Pending jobs a queue may hold; a submission past it gets 429 (0: none).",
    )
    max_pending_per_principal: int = Field(
        0,
        ge=0,
        description="Pending jobs one principal (an API key or token subject) may hold; a "
        "submission past it gets 429 (0: none; callers without a principal are not counted).",
    )
    max_job_timeout_seconds: float = Field(
        86400.0,
        ge=1,
        le=7 * 86400,  # the API's schema allows a week at most
        description="The largest timeout_seconds a job may ask for.",
    )
    hyperparameter_ceilings: str = Field(
        DEFAULT_CEILINGS,
        description="Largest value of each named hyperparameter, 'name=N,...', on every runtime "
        "that has it (checked at submission).",
    )
    max_parameters_bytes: int = Field(
        65_536, ge=2, description="Largest hyperparameters or inference parameters, as JSON."
    )
    max_input_data_chars: int = Field(
        262_144, ge=1, description="Largest inference input_data (characters)."
    )
    max_description_chars: int = Field(
        10_000, ge=0, le=10_000, description="Longest job description (characters)."
    )

    @field_validator("rate_limit_submit", "rate_limit_read")
    @classmethod
    def _rate(cls, value: str) -> str:
        parse_rate(value)
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        parse_networks(value)
        return value

    @field_validator("hyperparameter_ceilings")
    @classmethod
    def _ceilings(cls, value: str) -> str:
        parse_ceilings(value)
        return value

    @property
    def submit_rate(self) -> Rate | None:
        return parse_rate(self.rate_limit_submit)

    @property
    def read_rate(self) -> Rate | None:
        return parse_rate(self.rate_limit_read)

    @cached_property
    def proxy_networks(self) -> list[IPNetwork]:
        return parse_networks(self.trusted_proxies)

    @cached_property
    def ceilings(self) -> dict[str, int]:
        return parse_ceilings(self.hyperparameter_ceilings)

    @cached_property
    def roots(self) -> list[Path]:
        return [Path(p).resolve() for p in self.data_roots.split(os.pathsep) if p]

    @property
    def on_loopback(self) -> bool:
        """Whether the API listens on a loopback address only."""
        return is_loopback(self.host)

    @property
    def auth_required(self) -> bool:
        return self.auth == "required" or (not self.auth and not self.on_loopback)

    @property
    def accepts_tokens(self) -> bool:
        """Whether a JWT issuer or secret is configured."""
        return bool(self.jwt_secret or self.oidc_issuer or self.jwt_jwks_url)

    @property
    def host_names(self) -> list[str] | None:
        """The Host header names answered (lowercase, no port); None for any."""
        names = [n.strip().lower() for n in self.allowed_hosts.split(",") if n.strip()]
        if "*" in names or (not names and not self.on_loopback):
            return None
        return names or list(LOOPBACK_NAMES)

    @property
    def queue_pythons(self) -> dict[str, Path]:
        """AIJOBS_QUEUE_PYTHON parsed and checked; ValueError saying what is wrong."""
        return parse_queue_python(self.queue_python)

    @property
    def resolved_store_url(self) -> str:
        return self.store_url or f"sqlite:///{(self.home / 'aijobs.db').resolve()}"

    @property
    def models_dir(self) -> Path:
        return (self.home / "models").resolve()

    @property
    def jobs_dir(self) -> Path:
        return (self.home / "jobs").resolve()


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def parse_queue_python(value: str) -> dict[str, Path]:
    """'tensorflow=/opt/tf/bin/python,pytorch-2.1-gpu=/opt/torch/bin/python' -> {queue: path}.

    Every queue must be known and every interpreter an executable file; a ValueError names each
    bad entry.
    """
    from aijobs import routing  # here: settings is imported by everything, routing by less

    out: dict[str, Path] = {}
    problems: list[str] = []
    for entry in (e.strip() for e in value.split(",")):
        if not entry:
            continue
        queue, sep, python = (part.strip() for part in entry.partition("="))
        if not sep or not queue or not python:
            problems.append(f"{entry!r} is not queue=/path/to/python")
        elif queue not in routing.QUEUES:
            problems.append(f"unknown queue {queue!r} (queues: {', '.join(routing.QUEUES)})")
        elif queue in out:
            problems.append(f"queue {queue!r} is given twice")
        else:
            path = Path(python).expanduser()
            if not path.is_file() or not os.access(path, os.X_OK):
                problems.append(f"interpreter for {queue!r}, {python!r}, is not an executable file")
            else:
                out[queue] = path.absolute()
    if problems:
        raise ValueError("; ".join(problems))
    return out


_TYPE_NAMES: dict[object, str] = {
    Path: "path",
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
}
_BOUNDS = (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤"), ("min_length", "length ≥"))


def _default_text(value: object) -> str:
    if isinstance(value, Path):
        return str(value) if value.is_absolute() else f"./{value}"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _rules_text(metadata: list[object]) -> str:
    rules = [
        f"{sign} {getattr(rule, name)}"
        for rule in metadata
        for name, sign in _BOUNDS
        if getattr(rule, name, None) is not None
    ]
    rules += [f"matches `{p}`" for rule in metadata if (p := getattr(rule, "pattern", None))]
    return ", ".join(rules)


def settings_markdown() -> str:
    """docs/settings.md: every AIJOBS_* variable of Settings with its type, default and meaning.

    The page is generated from the fields themselves (scripts/settings_docs.py writes it; a unit
    test fails when the file and the fields drift apart), so the descriptions above are the docs.
    """
    rows = [
        "| Variable | Type | Default | Allowed | Meaning |",
        "|---|---|---|---|---|",
    ]
    for name, field in Settings.model_fields.items():
        default = _default_text(field.default)
        cells = (
            f"`{variable(name)}`",
            _TYPE_NAMES.get(field.annotation, str(field.annotation)),
            f"`{default}`" if default else "empty",
            _rules_text(field.metadata),
            field.description or "",
        )
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(
        [
            "# Settings",
            "",
            "<!-- Generated from aijobs.settings.Settings by `.venv/bin/python "
            "scripts/settings_docs.py`; edit the fields' descriptions, not this file. -->",
            "",
            "Every process (`aijobs serve`, `aijobs worker`, `aijobs up`) reads these environment "
            "variables once at start; a value outside what is allowed stops it there. Booleans "
            "take `true`/`false` (also `1`/`0`, `yes`/`no`).",
            "",
            *rows,
            "",
            "The clients read `AIJOBS_URL` (the API's address, default `http://localhost:8000`): "
            "see [clients.md](clients.md).",
            "",
        ]
    )
