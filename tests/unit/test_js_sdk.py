"""The JavaScript SDK (clients/js) against the Python side: the types it declares match the API's
OpenAPI schema, and its version is the package's."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

import aijobs
from aijobs.api.app import create_app
from aijobs.settings import Settings

JS = Path(__file__).resolve().parents[2] / "clients" / "js"

# index.d.ts interface -> (OpenAPI schema, its fields the SDK takes as positional arguments)
SCHEMA_OF: dict[str, tuple[str, frozenset[str]]] = {
    "SubmitResponse": ("SubmitResponse", frozenset()),
    "JobStatus": ("JobStatus", frozenset()),
    "Waiting": ("Waiting", frozenset()),
    "JobSummary": ("JobSummary", frozenset()),
    "JobList": ("JobList", frozenset()),
    "ModelInfo": ("ModelInfo", frozenset()),
    "QueueInfo": ("QueueInfo", frozenset()),
    "WorkerInfo": ("LiveWorker", frozenset()),
    "Health": ("Health", frozenset()),
    "TrainingOptions": ("TrainingRequest", frozenset({"model_type", "data_path"})),
    "InferenceOptions": ("InferenceRequest", frozenset({"model_id", "input_data"})),
}
# Interfaces of the SDK itself (its options), with no counterpart in the API.
CLIENT_ONLY = {"RequestOptions", "SubmitOptions", "ClientOptions"}


def interfaces(source: str) -> dict[str, dict[str, bool]]:
    """Each `interface X { ... }` of a .d.ts file: field name -> whether it is optional (`?`)."""
    found: dict[str, dict[str, bool]] = {}
    for name, body in re.findall(r"^export interface (\w+)[^{]*\{(.*?)^\}", source, re.M | re.S):
        fields = re.findall(r"^  (\w+)(\??):", body, re.M)  # index signatures are left out
        found[name] = {field: optional == "?" for field, optional in fields}
    return found


def string_union(source: str, name: str) -> set[str]:
    match = re.search(rf"^export type {name} = (.*?);$", source, re.M)
    assert match, f"index.d.ts declares no type {name}"
    return set(re.findall(r"'([^']*)'", match.group(1)))


@pytest.fixture(scope="module")
def openapi(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("openapi")
    schema: dict[str, Any] = create_app(Settings(home=home, data_roots=str(home))).openapi()
    return schema


@pytest.fixture(scope="module")
def declared() -> str:
    return (JS / "index.d.ts").read_text()


def test_every_interface_is_checked(declared: str) -> None:
    assert set(interfaces(declared)) == set(SCHEMA_OF) | CLIENT_ONLY


@pytest.mark.parametrize("interface", sorted(SCHEMA_OF))
def test_declared_fields_match_the_schema(
    interface: str, declared: str, openapi: dict[str, Any]
) -> None:
    schema_name, positional = SCHEMA_OF[interface]
    schema = openapi["components"]["schemas"][schema_name]
    required = set(schema.get("required", ())) - positional
    expected = {
        field: field not in required for field in schema["properties"] if field not in positional
    }
    assert interfaces(declared)[interface] == expected, f"index.d.ts {interface} vs {schema_name}"


def test_declared_states_and_job_types_match_the_schema(
    declared: str, openapi: dict[str, Any]
) -> None:
    schemas = openapi["components"]["schemas"]
    assert string_union(declared, "JobState") == set(schemas["State"]["enum"])
    assert string_union(declared, "JobType") == set(schemas["JobType"]["enum"])


def test_the_js_sdk_has_the_package_version() -> None:
    """index.js stays dependency-free and loads in browsers, so it cannot read package.json: its
    VERSION constant is a copy that this test keeps in step."""
    package = json.loads((JS / "package.json").read_text())
    constant = re.search(r"^const VERSION = '([^']+)';$", (JS / "index.js").read_text(), re.M)
    assert constant, "index.js declares no VERSION constant"
    assert package["version"] == constant.group(1) == aijobs.__version__
