"""The SQLite store's clocks: the wall clock for the times a user reads, a clock that cannot jump
for leases.

A lease is a deadline compared across processes. On the wall clock an NTP step, or a change of
the time by hand, moves every deadline at once: a step forward expires every lease together and
every running job is rerun, its attempt lost. The processes that share one SQLite file are on one
machine (WAL needs shared memory), so they share the kernel's monotonic clock, which never steps:
leases use it. CLOCK_MONOTONIC rather than CLOCK_BOOTTIME: it stands still while the machine
sleeps, and so do the workers, so a laptop that resumes finds its leases as they were (the time
asleep is no sign that a worker died); on the wall clock or CLOCK_BOOTTIME each would have expired
and each job would be rerun. Python's time.monotonic() is that clock on Linux, macOS and Windows.

A monotonic clock starts again at each boot: the file records the boot its leases belong to, and
a store opened in another boot expires every lease left over (their workers went with that boot),
and ends every retry's back-off (its time was on that boot's clock).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")


class StoreClock:
    """The store's clocks, in integer milliseconds."""

    def wall_ms(self) -> int:
        """Wall-clock time: created, started, finished, updated."""
        return int(time.time() * 1000)

    def lease_ms(self) -> int:
        """Monotonic time since boot, shared by every process of the machine: leases and
        heartbeats."""
        return time.monotonic_ns() // 1_000_000

    def boot_id(self) -> str:
        """What identifies this boot of the machine: lease times of another boot are void."""
        try:
            return BOOT_ID_FILE.read_text().strip()
        except OSError:
            # No boot id (not Linux): the wall-clock time of the boot, to the minute. A sleep or
            # a clock step moves it, so a store opened after one expires the leases then, once.
            return str(round((time.time() - time.monotonic()) / 60))


def settle_lease_clock(db: sqlite3.Connection, clock: StoreClock) -> None:
    """In an open write transaction: make the file's leases this boot's (see the module
    docstring). A file last opened in another boot has its leases expired; one whose leases
    were kept on the wall clock has them moved onto the lease clock, each keeping its time left."""
    boot = clock.boot_id()
    rows = list(db.execute("SELECT value FROM meta WHERE key = 'lease_boot'"))
    if rows and rows[0][0] == boot:
        return
    if rows:
        db.execute("UPDATE jobs SET lease_until = 0 WHERE state = 'running'")
        # Retries waiting out a back-off on that boot's clock: due now.
        db.execute("UPDATE jobs SET not_before = 0 WHERE not_before IS NOT NULL")
        db.execute("UPDATE workers SET last_seen = 0")  # they went with their boot
    else:
        shift = (clock.wall_ms(), clock.lease_ms())
        db.execute(
            "UPDATE jobs SET lease_until = lease_until - ? + ? WHERE state = 'running'", shift
        )
        db.execute("UPDATE workers SET last_seen = last_seen - ? + ?", shift)
    db.execute(
        "INSERT INTO meta (key, value) VALUES ('lease_boot', ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (boot,),
    )
