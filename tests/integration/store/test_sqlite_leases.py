"""The SQLite store's leases do not follow the wall clock: a step of the time (NTP, a change by
hand) neither expires them nor stretches them; a reboot expires them all. Retry back-offs run
on the same clock."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from aijobs.jobs import JobType, NewJob, Renewal, State
from aijobs.store.base import RetryBackoff
from aijobs.store.sqlite import SQLiteStore
from aijobs.store.sqlite.clock import StoreClock

HOUR_MS = 3_600_000
LEASE = 30.0
SHORT = 0.05
EXPIRE = 0.12


class SteppedClock(StoreClock):
    """The machine's clocks, with a wall clock that can be stepped, and a boot id of choice."""

    def __init__(self, boot: str | None = None) -> None:
        self.step_ms = 0
        self.lease_step_ms = 0  # time passed on the lease clock, beyond the real time
        self.boot = boot

    def wall_ms(self) -> int:
        return super().wall_ms() + self.step_ms

    def lease_ms(self) -> int:
        return super().lease_ms() + self.lease_step_ms

    def boot_id(self) -> str:
        return self.boot if self.boot is not None else super().boot_id()


def new() -> NewJob:
    return NewJob(job_type=JobType.TRAINING, queue="q", payload={"n": 1})


async def test_a_step_of_the_wall_clock_neither_expires_nor_stretches_leases(
    tmp_path: Path,
) -> None:
    clock = SteppedClock()
    store = SQLiteStore(str(tmp_path / "aijobs.db"), clock=clock)
    await store.open()
    try:
        job = await store.submit(new())
        (claim,) = await store.claim(["q"], "w1", LEASE)
        clock.step_ms = HOUR_MS  # NTP steps the time an hour forward
        assert await store.rescue_expired() == []
        assert await store.renew("w1", {job.id: (claim.token, None)}, LEASE) == {job.id: Renewal.OK}
        assert (await store.get(job.id)).state is State.RUNNING
        clock.step_ms = -HOUR_MS  # ... or back: a lease that ends still ends on time
        other = await store.submit(new())
        await store.claim(["q"], "w2", SHORT)
        await asyncio.sleep(EXPIRE)
        assert await store.rescue_expired() == [(other.id, State.PENDING)]
        assert await store.finish(job.id, claim.token, {"ok": True})
        done = await store.get(job.id)  # what users read stays on the wall clock
        assert done.finished_at is not None
        assert abs(done.finished_at - (time.time() - 3600)) < 60
    finally:
        await store.close()


async def test_a_retry_waits_out_its_back_off_on_the_lease_clock(tmp_path: Path) -> None:
    clock = SteppedClock(boot="boot-1")
    path = str(tmp_path / "aijobs.db")
    store = SQLiteStore(path, clock=clock, retry_backoff=RetryBackoff(60, 600))
    await store.open()
    try:
        job = await store.submit(new())
        (claim,) = await store.claim(["q"], "w1", LEASE)
        assert await store.fail(job.id, claim.token, "crashed", retry=True)
        clock.step_ms = HOUR_MS  # the wall clock does not end it
        assert await store.claim(["q"], "w1", LEASE) == []
        clock.lease_step_ms = 29_000  # less than the least it waits (half of 60 s)
        assert await store.claim(["q"], "w1", LEASE) == []
        clock.lease_step_ms = 61_000  # more than the most
        (again,) = await store.claim(["q"], "w1", LEASE)
        assert (again.job.id, again.job.attempt) == (job.id, 2)
        assert await store.fail(job.id, again.token, "crashed", retry=True)
    finally:
        await store.close()
    # a back-off on another boot's clock is over: its time cannot be told on this one
    rebooted = SQLiteStore(path, clock=SteppedClock(boot="boot-2"))
    await rebooted.open()
    try:
        (last,) = await rebooted.claim(["q"], "w1", LEASE)
        assert (last.job.id, last.job.attempt) == (job.id, 3)
    finally:
        await rebooted.close()


async def test_a_store_opened_after_a_reboot_expires_the_leases_of_the_boot_before(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "aijobs.db")
    before = SQLiteStore(path, clock=SteppedClock(boot="boot-1"))
    await before.open()
    job = await before.submit(new())
    await before.claim(["q"], "w1", LEASE)
    await before.close()
    same = SQLiteStore(path, clock=SteppedClock(boot="boot-1"))
    await same.open()
    assert await same.rescue_expired() == []  # the same boot: the lease holds
    await same.close()
    after = SQLiteStore(path, clock=SteppedClock(boot="boot-2"))
    await after.open()
    try:
        assert await after.rescue_expired() == [(job.id, State.PENDING)]
    finally:
        await after.close()


async def test_leases_kept_on_the_wall_clock_by_an_earlier_version_keep_their_time_left(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "aijobs.db")
    store = SQLiteStore(path)
    await store.open()
    held, lapsed = [(await store.submit(new())).id for _ in range(2)]
    await store.claim(["q"], "w1", LEASE, limit=2)
    await store.close()
    with sqlite3.connect(path) as db:  # as an earlier version left the file: wall-clock leases
        db.execute("DELETE FROM meta")
        now = int(time.time() * 1000)
        db.execute("UPDATE jobs SET lease_until = ? WHERE id = ?", (now + HOUR_MS, held))
        db.execute("UPDATE jobs SET lease_until = ? WHERE id = ?", (now - 1000, lapsed))
    db.close()
    store = SQLiteStore(path)
    await store.open()
    try:
        assert await store.rescue_expired() == [(lapsed, State.PENDING)]
        assert (await store.get(held)).state is State.RUNNING
    finally:
        await store.close()
