"""The model-type table is the one source: each runtime trains exactly the types it lists, on
queues that runtime serves, and the runtimes' own per-type tables cover the same types."""

from __future__ import annotations

import pytest

from aijobs import model_types, routing
from aijobs.model_types import MODEL_TYPES, served_by
from aijobs.runtimes.base import discover
from aijobs.runtimes.tensorflow import params as tf_params
from aijobs.runtimes.torch import runtime as torch_runtime

RUNTIMES = ("sklearn", "pytorch", "tensorflow")


@pytest.mark.parametrize("name", RUNTIMES)
def test_each_runtime_trains_what_the_table_lists(name: str) -> None:
    assert discover()[name].model_types == served_by(name)


def test_every_type_goes_to_queues_its_runtime_serves() -> None:
    for m in MODEL_TYPES.values():
        assert {routing.QUEUES[q].runtime for q in m.queues} == {m.runtime}, m.name
        assert routing.ROUTES[m.name] == m.queues


def test_every_type_belongs_to_a_known_runtime() -> None:
    assert {m.runtime for m in MODEL_TYPES.values()} == set(RUNTIMES)
    assert set().union(*(served_by(name) for name in RUNTIMES)) == set(MODEL_TYPES)


def test_the_runtimes_per_type_tables_match() -> None:
    assert set(torch_runtime.FAMILIES) == served_by("pytorch")
    assert set(tf_params.PER_TYPE) == served_by("tensorflow")
    assert set(tf_params.MIN_IMAGE_SIZE) == served_by("tensorflow")


def test_default_durations_come_from_the_table() -> None:
    assert model_types.estimate([], "inception", inference=False) == "00:10:00"
    assert model_types.estimate([], "random_forest", inference=False) == "00:00:30"
    assert model_types.estimate([], "my_custom_model", inference=False) == "00:15:00"
