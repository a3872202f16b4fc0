"""The SQLite store's tables, and how a job's row maps to a Job.

Times are integer milliseconds from ``time.time()`` in the table and float seconds on ``Job``,
but for ``lease_until``, on the lease clock (clock.py); dict and list fields are JSON text.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from aijobs.jobs import JOB_FIELDS, ROW_FIELDS, Job, Progress, shown_state
from aijobs.store.base import clamp_fraction, compact_json
from aijobs.store.sqlite.stats import STATS_SCHEMA

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT    NOT NULL UNIQUE,
    job_type         TEXT    NOT NULL,
    queue            TEXT    NOT NULL,
    state            TEXT    NOT NULL
        CHECK (state IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    payload          TEXT    NOT NULL,
    model_type       TEXT,
    model_id         TEXT,
    description      TEXT,
    priority         INTEGER NOT NULL DEFAULT 0,
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    timeout_seconds  REAL,
    progress         REAL    NOT NULL DEFAULT 0,
    metrics          TEXT    NOT NULL DEFAULT '{}',
    history          TEXT    NOT NULL DEFAULT '[]',
    result           TEXT,
    error            TEXT,
    principal        TEXT,
    owner            TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    token            TEXT,
    lease_until      INTEGER,
    stalls           INTEGER NOT NULL DEFAULT 0,
    idem             TEXT UNIQUE,
    not_before       INTEGER,  -- a retried pending job waits out its back-off (lease clock)
    fail_reason      TEXT,  -- why its last attempt failed (stats.FailureReason), for job_stats
    log_length       INTEGER NOT NULL DEFAULT 0,  -- characters written to `log`, dropped ones too
    log              TEXT  -- last: reading the columns before it never touches its overflow pages
);
-- claim: an index seek per queue and job type, already in (priority desc, seq) order; by type,
-- so that a worker without a free training slot reaches the inference jobs behind training jobs
-- without walking past them (jobs_claim was the same index without the type)
-- without the jobs that wait out a retry's back-off (jobs_ready was the same index with them)
DROP INDEX IF EXISTS jobs_claim;
DROP INDEX IF EXISTS jobs_ready;
CREATE INDEX IF NOT EXISTS jobs_claimable ON jobs (queue, job_type, priority DESC, seq)
    WHERE state = 'pending' AND cancel_requested = 0 AND not_before IS NULL;
-- the retried jobs waiting out their back-off, by when they may run: each claim makes the due
-- ones claimable (not_before NULL), so a claim never walks past the ones still waiting
CREATE INDEX IF NOT EXISTS jobs_delayed ON jobs (not_before)
    WHERE state = 'pending' AND not_before IS NOT NULL;
-- rescue: only running jobs, ordered by deadline
CREATE INDEX IF NOT EXISTS jobs_lease ON jobs (lease_until) WHERE state = 'running';
-- GET /jobs?status=...: newest first within the state a job shows (SHOWN_STATE, the very
-- expression, so that the planner uses the index); jobs_state was this on the stored state
DROP INDEX IF EXISTS jobs_state;
CREATE INDEX IF NOT EXISTS jobs_shown ON jobs (
    CASE WHEN state = 'running' AND started_at IS NULL THEN 'pending' ELSE state END, seq);
-- GET /jobs with a deep offset: skipping rows over this tiny index, not over the table
CREATE INDEX IF NOT EXISTS jobs_seq ON jobs (seq);
-- GET /jobs for a caller who is not an admin: its own jobs, newest first, in all states or in
-- the one shown
CREATE INDEX IF NOT EXISTS jobs_principal ON jobs (principal, seq) WHERE principal IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_principal_shown ON jobs (principal,
    CASE WHEN state = 'running' AND started_at IS NULL THEN 'pending' ELSE state END, seq)
    WHERE principal IS NOT NULL;
-- duration estimates
CREATE INDEX IF NOT EXISTS jobs_durations
    ON jobs (job_type, model_type, queue, finished_at, started_at) WHERE state = 'completed';

CREATE TABLE IF NOT EXISTS counts (
    queue TEXT    NOT NULL,
    state TEXT    NOT NULL,
    n     INTEGER NOT NULL,
    PRIMARY KEY (queue, state)
) WITHOUT ROWID;
-- Counted by the state a job shows (a claimed job not started yet is pending: see
-- jobs.shown_state). jobs_count_update counted the stored state, which was the same then: every
-- running job had started.
DROP TRIGGER IF EXISTS jobs_count_update;
CREATE TRIGGER IF NOT EXISTS jobs_count_insert AFTER INSERT ON jobs BEGIN
    INSERT INTO counts (queue, state, n) VALUES (new.queue, new.state, 1)
        ON CONFLICT (queue, state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS jobs_count_shown AFTER UPDATE OF state, queue, started_at ON jobs
    WHEN (CASE WHEN old.state = 'running' AND old.started_at IS NULL THEN 'pending'
               ELSE old.state END)
      IS NOT (CASE WHEN new.state = 'running' AND new.started_at IS NULL THEN 'pending'
                   ELSE new.state END)
      OR old.queue IS NOT new.queue BEGIN
    UPDATE counts SET n = n - 1 WHERE queue = old.queue AND state =
        (CASE WHEN old.state = 'running' AND old.started_at IS NULL THEN 'pending'
              ELSE old.state END);
    INSERT INTO counts (queue, state, n) VALUES (new.queue,
        (CASE WHEN new.state = 'running' AND new.started_at IS NULL THEN 'pending'
              ELSE new.state END), 1)
        ON CONFLICT (queue, state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS jobs_count_delete AFTER DELETE ON jobs BEGIN
    UPDATE counts SET n = n - 1 WHERE queue = old.queue AND state =
        (CASE WHEN old.state = 'running' AND old.started_at IS NULL THEN 'pending'
              ELSE old.state END);
END;

CREATE TABLE IF NOT EXISTS workers (
    worker_id TEXT PRIMARY KEY,
    info      TEXT    NOT NULL,
    last_seen INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS models (
    model_id   TEXT PRIMARY KEY,
    record     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    last_used  INTEGER  -- when an inference job for it was last submitted (retention)
);
-- listing newest first, and retention: a model trained long ago, unless used since
CREATE INDEX IF NOT EXISTS models_created ON models (created_at);
CREATE TABLE IF NOT EXISTS api_keys (
    name       TEXT PRIMARY KEY,
    key_hash   TEXT    NOT NULL UNIQUE,
    admin      INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
-- rate limits: one fixed window per key (take_tokens); ended windows are deleted as they pass
CREATE TABLE IF NOT EXISTS rate_windows (
    key        TEXT    PRIMARY KEY,
    window_end INTEGER NOT NULL,
    used       INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rate_windows_end ON rate_windows (window_end);
-- retention: the oldest finished jobs first
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_at)
    WHERE state IN ('completed', 'failed', 'cancelled');
-- facts about the file itself: lease_boot, the boot of the machine its lease times belong to
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

# The state a job shows, in SQL (jobs.shown_state): what listings filter on and counts count.
SHOWN_STATE = "CASE WHEN state = 'running' AND started_at IS NULL THEN 'pending' ELSE state END"

# When a job that failed on its `attempt` may run again, on the lease clock (RetryBackoff:
# base * 2^(attempt - 1) ms, capped, jittered down to half, per row); NULL for no wait. Reads
# :base_ms, :max_ms and :lease_now.
_DELAY = "min(:max_ms, :base_ms * (1 << min(attempt - 1, 40)))"
_JITTER = "(0.5 + (abs(random()) % 1000000) / 2000000.0)"
RETRY_AT = f"(CASE WHEN :base_ms > 0 THEN :lease_now + CAST({_DELAY} * {_JITTER} AS INTEGER) END)"

# A renewal's log chunk (:log, at offset :log_at; :log_keep characters kept), appended
# where it goes on from the stored log: only what the log lacks of it (a retried renewal adds
# nothing twice); after a gap (output the worker skipped to keep the tail) it starts the kept
# text afresh. The kept text is the tail. SET reads the row as it was before the update.
LOG_APPEND = (
    "log = CASE WHEN :log IS NULL OR :log_at + length(:log) <= log_length THEN log "
    "ELSE substr(CASE WHEN :log_at > log_length THEN :log "
    "ELSE coalesce(log, '') || substr(:log, log_length - :log_at + 1) END, -:log_keep) END, "
    "log_length = CASE WHEN :log IS NULL THEN log_length "
    "ELSE max(log_length, :log_at + length(:log)) END"
)


def progress_params(progress: Progress | None) -> dict[str, Any]:
    """A renewal's progress as the parameters of its UPDATE (None: a value left unchanged)."""
    p = progress or Progress()
    return {
        "fraction": None if p.fraction is None else clamp_fraction(p.fraction),
        "metrics": None if p.metrics is None else compact_json(p.metrics),
        "history": None if p.history is None else compact_json(p.history),
        "started": p.started,
        "log": p.log,
        "log_at": p.log_at,
    }


# The columns of a Job's fields but `log`, in Job's order: what decode_job() maps.
COLUMNS = ", ".join(JOB_FIELDS)
NCOLS = len(JOB_FIELDS)  # a row's columns after these: `log`, or what a query adds
ROW_COLUMNS = ", ".join(ROW_FIELDS)  # what a listing reads


def seconds(ms: int | None) -> float | None:
    return None if ms is None else ms / 1000.0


def decode_job(
    row: Sequence[Any], log: str | None = None, fields: Sequence[str] = JOB_FIELDS
) -> Job:
    """A Job from a row that starts with `fields`' columns (and its log, if read); the fields
    a row leaves out (ROW_FIELDS) keep Job's defaults, an empty payload among them."""
    f: dict[str, Any] = {"payload": None} | dict(zip(fields, row, strict=False))
    for name in ("payload", "metrics", "history", "result"):
        if f.get(name) is not None:
            f[name] = json.loads(f[name])
    f["payload"] = f["payload"] or {}
    for name in ("created_at", "updated_at", "started_at", "finished_at"):
        f[name] = seconds(f[name])
    f["cancel_requested"] = bool(f["cancel_requested"])
    f["state"] = shown_state(f["state"], f["started_at"])
    return Job(**f, log=log)


# Columns added since a table was first created: a file made before them gains them on open.
# (Such a column lands after `log` there, which costs those reads of `log`'s overflow pages.)
ADDED_COLUMNS = {
    "jobs": [
        "principal TEXT",
        "not_before INTEGER",
        "fail_reason TEXT",
        "log_length INTEGER NOT NULL DEFAULT 0",
    ],
    "models": ["last_used INTEGER"],
}


def create_schema(db: sqlite3.Connection) -> None:
    """In an open write transaction: the tables, indexes and triggers, with the columns added
    since an older file was created (before the indexes that use them)."""
    for stmt in split_sql(SCHEMA + STATS_SCHEMA):
        db.execute(stmt)
        created = re.match(r"\s*CREATE TABLE IF NOT EXISTS (\w+)", stmt)
        if created and (added := ADDED_COLUMNS.get(created[1])):
            rows = db.execute(f"PRAGMA table_info({created[1]})")
            have = {row[1] for row in rows}
            for column in added:
                if column.split()[0] not in have:
                    db.execute(f"ALTER TABLE {created[1]} ADD COLUMN {column}")


def split_sql(script: str) -> Iterable[str]:
    """Split the schema into statements (executescript would COMMIT our open transaction)."""
    stmt = ""
    for line in script.splitlines(keepends=True):
        stmt += line
        if sqlite3.complete_statement(stmt):
            if stmt.strip():
                yield stmt
            stmt = ""
    if stmt.strip():
        yield stmt
