"""The API in process on a real SQLite file that cannot take writes: locked by another
connection past the busy timeout, or on a full disk. Each is a store outage: a 503 in the
envelope (never a 500), and the store writes again once the fault is gone."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aijobs.api.app import create_app
from aijobs.settings import Settings
from aijobs.store.sqlite import SQLiteStore
from tests.auth_support import LOCAL
from tests.unit.test_api import assert_envelope, train


def client_on(home: Path, db_path: Path) -> TestClient:
    (home / "data").mkdir(parents=True, exist_ok=True)
    (home / "data" / "tabular_data.csv").write_text("a,b,label\n1,2,x\n")
    settings = Settings(home=home / "var", data_roots=str(home / "data"))
    store = SQLiteStore(str(db_path), busy_timeout=0.2)
    return TestClient(create_app(settings, store=store), base_url=LOCAL)


def wrote_from_another_connection(db_path: Path) -> None:
    """A write from a connection of its own: it fails if anyone still holds the write lock."""
    other = sqlite3.connect(db_path, timeout=1.0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("DELETE FROM workers WHERE worker_id = 'nobody'")
        other.execute("COMMIT")
    finally:
        other.close()


def test_a_database_locked_past_the_busy_timeout_is_a_503(tmp_path: Path) -> None:
    db_path = tmp_path / "aijobs.db"
    with client_on(tmp_path, db_path) as client:
        first = client.post("/jobs/training", json=train())
        assert first.status_code == 200
        holder = sqlite3.connect(db_path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")  # another process's long write transaction
        try:
            r = client.post("/jobs/training", json=train())
            assert_envelope(r, 503, "locked")
            assert r.headers["Retry-After"]
            # Reads do not wait for the writer.
            status = client.get(f"/jobs/{first.json()['job_id']}/status")
            assert status.status_code == 200
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert client.post("/jobs/training", json=train()).status_code == 200


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MiB file system (tmpfs); needs the right to mount one."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Take every free byte of `disk` with one file; return it (deleting it frees the disk)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:  # ENOSPC: the disk is full
        pass
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_is_a_503_and_the_store_writes_again_once_there_is_room(
    tmp_path: Path, small_disk: Path
) -> None:
    db_path = small_disk / "aijobs.db"
    with client_on(tmp_path, db_path) as client:
        assert client.post("/jobs/training", json=train()).status_code == 200
        filler = fill(small_disk)
        r = client.post("/jobs/training", json=train(description="x" * 9_000))
        assert_envelope(r, 503, "full")
        filler.unlink()
        # The failed transaction let go of the write lock: other processes write, and so do we.
        wrote_from_another_connection(db_path)
        assert client.post("/jobs/training", json=train()).status_code == 200
        listed = client.get("/jobs").json()
        assert listed["total"] == 2
