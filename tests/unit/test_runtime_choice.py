"""Which runtime a worker trains a model type with, and what it says when none of its runtimes
declares the type (the default route of a model type outside the routing table)."""

from __future__ import annotations

from pathlib import Path

from aijobs.jobs import JobType, NewJob, State
from aijobs.runtimes.base import Runtime
from aijobs.runtimes.choice import RuntimeChoice
from aijobs.store.sqlite import SQLiteStore
from tests.echo_runtime import EchoRuntime
from tests.unit.worker_fakes import setup, until


class TorchLike(EchoRuntime):
    name = "pytorch"
    model_types = frozenset({"bert", "gpt"})


def installed(*extra: Runtime) -> dict[str, Runtime]:
    return {r.name: r for r in (TorchLike(), *extra)}


def test_the_queue_runtime_trains_the_catalogue_and_a_plugin_its_own_types() -> None:
    choice = RuntimeChoice(installed=installed(EchoRuntime()))
    assert choice.runtime_for("pytorch-2.1-cpu", "bert") == "pytorch"
    assert choice.runtime_for("pytorch-2.1-cpu", "echo") == "echo"
    assert choice.runtime_for("pytorch-2.1-cpu", "quantum_forest") is None
    assert choice.declared(["pytorch-2.1-cpu"]) == ["bert", "echo", "gpt"]
    refusal = choice.refusal("pytorch-2.1-cpu", "quantum_forest")
    assert "'quantum_forest'" in refusal
    assert "it trains: bert, echo, gpt" in refusal


def test_a_named_runtime_serves_every_queue() -> None:
    choice = RuntimeChoice("tests.echo_runtime:EchoRuntime", installed=installed())
    assert choice.runtime_for("sklearn", "anything") == "tests.echo_runtime:EchoRuntime"
    assert choice.declared(["sklearn", "pytorch-2.1-cpu"]) == ["echo"]


async def _submit(store: SQLiteStore, model_type: str) -> str:
    payload = {"model_type": model_type, "data_path": "/data/x"}
    job = NewJob(
        job_type=JobType.TRAINING, queue="pytorch-2.1-cpu", payload=payload, model_type=model_type
    )
    return (await store.submit(job)).id


async def test_a_worker_fails_a_type_it_lacks_and_trains_a_plugins_type(tmp_path: Path) -> None:
    async with setup(tmp_path, ["pytorch-2.1-cpu"]) as s:
        s.worker.training.runtimes = RuntimeChoice(installed=installed(EchoRuntime()))
        unknown = await _submit(s.store, "quantum_forest")
        await s.worker.tick()
        await until(lambda: not s.worker.running)
        failed = await s.store.get(unknown)
        assert failed.state is State.FAILED
        assert "it trains: bert, echo, gpt" in (failed.error or "")
        assert not s.children  # refused before any process started

        echo = await _submit(s.store, "echo")
        s.worker.store_woke = True  # the watcher heard of work
        await s.worker.tick()
        await until(lambda: len(s.children) == 1)
        spec = s.children[0].spec
        assert spec is not None
        assert spec.runtime == "echo"
        s.children[0].end()
        await until(lambda: not s.worker.running)
        assert (await s.store.get(echo)).state is State.COMPLETED
