"""The API's upkeep forgets unused models (AIJOBS_RETAIN_MODELS_SECONDS) and deletes their
files from the model store it reaches, as DELETE /models does."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from aijobs import errors
from aijobs.api.app import forget_unused_models
from aijobs.jobs import ModelRecord
from aijobs.store.sqlite import SQLiteStore


def _model(models_dir: Path, model_id: str, created_at: float) -> ModelRecord:
    (models_dir / model_id / "attempt-1").mkdir(parents=True)
    (models_dir / model_id / "attempt-1" / "model.skops").write_bytes(b"weights")
    return ModelRecord(
        model_id=model_id,
        framework="sklearn",
        queue="q",
        model_type="random_forest",
        path=str(models_dir / model_id / "attempt-1"),
        job_id="job_1",
        created_at=created_at,
    )


async def test_an_unused_model_is_forgotten_with_its_files(tmp_path: Path) -> None:
    models_dir = tmp_path / "models"
    store = SQLiteStore(str(tmp_path / "aijobs.db"), retain_models_seconds=60)
    await store.open()
    try:
        await store.add_model(_model(models_dir, "old_model", time.time() - 120))
        await store.add_model(_model(models_dir, "new_model", time.time()))

        await forget_unused_models(store, models_dir)

        with pytest.raises(errors.ModelNotFound):
            await store.get_model("old_model")
        assert not (models_dir / "old_model").exists()
        assert (await store.get_model("new_model")).model_id == "new_model"
        assert (models_dir / "new_model" / "attempt-1" / "model.skops").is_file()
    finally:
        await store.close()
