"""Limits across two real API processes on one store: a burst of submissions split between
them is held to the rate limit and the queue limit together, never more."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.integration.harness import QUICK, System

pytestmark = pytest.mark.stores()

BURST = 12


def test_a_burst_over_two_api_processes_is_held_to_the_limits(system: System) -> None:
    system.env_overrides |= {
        "AIJOBS_RATE_LIMIT_SUBMIT": "5/hour",
        "AIJOBS_MAX_PENDING_PER_QUEUE": "3",
    }
    other = System(home=system.home, data=system.data, env_overrides=system.env_overrides)
    system.start_api()
    try:
        other.start_api()
        apis = (system, other)

        def submit(i: int) -> httpx.Response:
            return apis[i % 2].post("/jobs/training", json=QUICK)

        with ThreadPoolExecutor(max_workers=BURST) as pool:
            answers = list(pool.map(submit, range(BURST)))
    finally:
        other.stop_all()
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] * 3 + [429] * (BURST - 3), [a.text for a in answers]
    details = [a.json()["detail"] for a in answers if a.status_code == 429]
    # Five passed the rate limit (three stored, two refused by the queue limit), the rest not.
    assert sum("AIJOBS_MAX_PENDING_PER_QUEUE=3" in d for d in details) == 2, details
    assert sum("AIJOBS_RATE_LIMIT_SUBMIT" in d for d in details) == BURST - 5, details
    for refused in (a for a in answers if "AIJOBS_RATE_LIMIT_SUBMIT" in a.text):
        assert refused.headers["RateLimit-Remaining"] == "0"
        assert int(refused.headers["Retry-After"]) > 0
    assert system.get("/jobs").json()["total"] == 3
