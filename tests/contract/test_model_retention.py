"""The JobStore contract for the retention of models (trim_models): a model neither trained nor
used by a submitted inference job within `retain_models_seconds` is forgotten."""

from __future__ import annotations

import asyncio
import time

import pytest

from aijobs import errors
from aijobs.jobs import JobType
from tests.contract.support import Factory, claim_one, model, new, opened

HOUR = 3600.0


async def test_models_unused_for_the_window_are_forgotten(store_factory: Factory) -> None:
    store = await opened(store_factory, retain_models_seconds=HOUR)
    try:
        long_ago = time.time() - 2 * HOUR
        await store.add_model(model("unused", "j1", created_at=long_ago))
        await store.add_model(model("used", "j2", created_at=long_ago))
        await store.add_model(model("trained-lately", "j3"))
        job = await store.submit(new())
        claim = await claim_one(store)
        assert await store.finish(
            job.id, claim.token, {}, model=model("finished", job.id, long_ago)
        )
        await store.submit(new(job_type=JobType.INFERENCE, model_id="used"))

        forgotten = await store.trim_models()

        assert sorted(m.model_id for m in forgotten) == ["finished", "unused"]
        for model_id in ("finished", "unused"):
            with pytest.raises(errors.ModelNotFound):
                await store.get_model(model_id)
        kept, total = await store.list_models()
        assert [m.model_id for m in kept] == ["trained-lately", "used"]
        assert total == 2
    finally:
        await store.close()


async def test_a_use_keeps_a_model_only_for_the_window(store_factory: Factory) -> None:
    window = 0.2
    store = await opened(store_factory, retain_models_seconds=window)
    try:
        await store.add_model(model("m", "j1", created_at=time.time() - HOUR))
        await store.submit(new(job_type=JobType.INFERENCE, model_id="m"))
        assert await store.trim_models() == []
        await asyncio.sleep(window * 2)
        # Another client: each client trims at most every MODEL_TRIM_INTERVAL.
        later = await opened(store_factory, retain_models_seconds=window)
        try:
            assert [m.model_id for m in await later.trim_models()] == ["m"]
        finally:
            await later.close()
    finally:
        await store.close()


async def test_models_are_kept_forever_by_default(store_factory: Factory) -> None:
    store = await opened(store_factory)
    try:
        await store.add_model(model("m", "j1", created_at=time.time() - 1000 * HOUR))
        assert await store.trim_models() == []
        assert (await store.get_model("m")).model_id == "m"
    finally:
        await store.close()
