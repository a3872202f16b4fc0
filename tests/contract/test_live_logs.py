"""The JobStore contract for live logs: a renewal carries the output written since the last one
(Progress.log at Progress.log_at), the store appends what it lacks of it, keeps the tail, and
counts every character (Job.log_length), so that offsets into a job's log stay absolute."""

from __future__ import annotations

from aijobs.jobs import Progress, Renewal, log_start, log_total
from aijobs.store.base import JobStore
from tests.contract.support import LONG, Factory, claim_one, new, opened


def chunk(text: str, at: int) -> Progress:
    return Progress(log=text, log_at=at)


async def test_renewals_append_the_log_while_the_job_runs(store: JobStore) -> None:
    job = await store.submit(new())
    c = await claim_one(store)
    assert (await store.get(job.id)).log_length == 0
    assert await store.renew("w1", {job.id: (c.token, chunk("epoch 1\n", 0))}, LONG) == {
        job.id: Renewal.OK
    }
    got = await store.get(job.id)
    assert (got.log, got.log_length) == ("epoch 1\n", 8)
    # progress and log in one renewal; the rest of the job's fields as before
    report = Progress(fraction=0.5, log="épö 2 ✓\n", log_at=8)
    assert await store.renew("w1", {job.id: (c.token, report)}, LONG) == {job.id: Renewal.OK}
    got = await store.get(job.id)
    assert got.log == "epoch 1\népö 2 ✓\n"
    assert got.log_length == len("epoch 1\népö 2 ✓\n")  # characters, not bytes
    assert got.progress == 0.5
    # a renewal without a chunk leaves the log alone
    await store.renew("w1", {job.id: (c.token, Progress(fraction=0.6))}, LONG)
    await store.renew("w1", {job.id: (c.token, None)}, LONG)
    assert (await store.get(job.id)).log == "epoch 1\népö 2 ✓\n"


async def test_a_retried_renewal_appends_nothing_twice(store: JobStore) -> None:
    job = await store.submit(new())
    c = await claim_one(store)
    await store.renew("w1", {job.id: (c.token, chunk("abc", 0))}, LONG)
    await store.renew("w1", {job.id: (c.token, chunk("abc", 0))}, LONG)  # the same again
    assert (await store.get(job.id)).log == "abc"
    # one that overlaps what landed (its first try did, its answer was lost) adds the rest
    await store.renew("w1", {job.id: (c.token, chunk("bcdé", 1))}, LONG)
    got = await store.get(job.id)
    assert (got.log, got.log_length) == ("abcdé", 5)


async def test_the_store_keeps_the_tail_and_counts_every_character(
    store_factory: Factory,
) -> None:
    store = await opened(store_factory, log_keep_chars=10)
    try:
        job = await store.submit(new())
        c = await claim_one(store)
        written = ""
        for n in range(7):
            line = f"l{n}é\n"  # a character of two bytes in every line
            await store.renew("w1", {job.id: (c.token, chunk(line, len(written)))}, LONG)
            written += line
        got = await store.get(job.id)
        assert got.log == written[-10:]
        assert got.log_length == len(written) == log_total(got)
        assert log_start(got) == len(written) - 10
        # a chunk longer than the cap keeps its own tail
        big = "x" * 25 + "yé"
        await store.renew("w1", {job.id: (c.token, chunk(big, len(written)))}, LONG)
        got = await store.get(job.id)
        assert got.log == (written + big)[-10:]
        assert got.log_length == len(written) + len(big)
    finally:
        await store.close()


async def test_a_gap_starts_the_kept_log_afresh(store: JobStore) -> None:
    """Output the worker skipped (more than the store keeps, written between two renewals):
    the kept text is contiguous, from the chunk on, and the total counts the skipped part."""
    job = await store.submit(new())
    c = await claim_one(store)
    await store.renew("w1", {job.id: (c.token, chunk("head\n", 0))}, LONG)
    await store.renew("w1", {job.id: (c.token, chunk("tail\n", 1000))}, LONG)
    got = await store.get(job.id)
    assert (got.log, got.log_length, log_start(got)) == ("tail\n", 1005, 1000)


async def test_a_stale_token_appends_nothing(store: JobStore) -> None:
    job = await store.submit(new())
    c = await claim_one(store)
    await store.renew("w1", {job.id: (c.token, chunk("mine\n", 0))}, LONG)
    stale = "0" * 32 + ":1"
    assert await store.renew("w1", {job.id: (stale, chunk("not mine\n", 5))}, LONG) == {
        job.id: Renewal.LOST
    }
    await store.cancel(job.id)
    assert await store.renew("w1", {job.id: (c.token, chunk("late\n", 5))}, LONG) == {
        job.id: Renewal.CANCEL
    }
    got = await store.get(job.id)
    assert (got.log, got.log_length) == ("mine\n", 5)


async def test_the_log_goes_on_across_attempts(store: JobStore) -> None:
    """A rerun's output follows the first run's: a claim hands the worker log_length, where
    its chunks start, so offsets never go back."""
    job = await store.submit(new(max_attempts=3))
    c = await claim_one(store)
    await store.renew("w1", {job.id: (c.token, chunk("run 1\n", 0))}, LONG)
    assert await store.fail(job.id, c.token, "crashed", retry=True)
    again = await claim_one(store, w="w2")
    assert again.job.log_length == 6
    await store.renew("w2", {job.id: (again.token, chunk("run 2\n", 6))}, LONG)
    assert await store.finish(job.id, again.token, {"ok": True})
    got = await store.get(job.id)
    assert (got.log, got.log_length) == ("run 1\nrun 2\n", 12)
