"""The JobStore contract for authentication and ownership: API keys, and each job's and model's
principal (listed by principal in the store's own indexes), on every backend."""

from __future__ import annotations

import time

import pytest

from aijobs import errors
from aijobs.apikeys import ApiKey, hash_key, new_key
from aijobs.jobs import State
from aijobs.store.base import JobStore
from tests.contract.support import LONG, Factory, claim_one, model, new, opened


def api_key(name: str, admin: bool = False) -> tuple[str, ApiKey]:
    secret = new_key()
    return secret, ApiKey(name=name, key_hash=hash_key(secret), admin=admin, created_at=time.time())


# -- API keys ----------------------------------------------------------------------------------
async def test_keys_are_created_found_by_hash_listed_and_revoked(store: JobStore) -> None:
    assert await store.list_keys() == []
    secret_b, b = api_key("bob", admin=True)
    secret_a, a = api_key("alice")
    await store.create_key(b)
    await store.create_key(a)
    assert [k.name for k in await store.list_keys()] == ["alice", "bob"]
    found = await store.key_by_hash(hash_key(secret_b))
    assert found is not None
    assert (found.name, found.admin, found.key_hash) == ("bob", True, b.key_hash)
    assert abs(found.created_at - b.created_at) < 0.01
    assert await store.key_by_hash(hash_key(secret_b + "x")) is None
    assert await store.revoke_key("bob")
    assert not await store.revoke_key("bob")
    assert await store.key_by_hash(hash_key(secret_b)) is None
    assert await store.key_by_hash(hash_key(secret_a)) is not None
    assert [k.name for k in await store.list_keys()] == ["alice"]


async def test_a_key_name_is_taken_until_revoked(store: JobStore) -> None:
    first_secret, first = api_key("ci")
    await store.create_key(first)
    second_secret, second = api_key("ci")
    with pytest.raises(errors.KeyNameTaken, match="'ci'"):
        await store.create_key(second)
    assert await store.key_by_hash(hash_key(second_secret)) is None  # nothing half-written
    assert await store.revoke_key("ci")
    await store.create_key(second)
    assert await store.key_by_hash(hash_key(first_secret)) is None
    assert await store.key_by_hash(hash_key(second_secret)) is not None


async def test_a_revoke_holds_at_once_for_every_client(
    store: JobStore, store_factory: Factory
) -> None:
    secret, key = api_key("shared")
    await store.create_key(key)
    other = await opened(store_factory)
    try:
        assert await other.key_by_hash(hash_key(secret)) is not None
        assert await store.revoke_key("shared")
        assert await other.key_by_hash(hash_key(secret)) is None
    finally:
        await other.close()


# -- principals ----------------------------------------------------------------------------------
async def test_a_principal_lists_only_its_own_jobs_in_every_state(store: JobStore) -> None:
    alice = [await store.submit(new(principal="alice")) for _ in range(3)]
    bob = await store.submit(new(principal="bob"))
    anonymous = await store.submit(new())
    assert (await store.get(alice[0].id)).principal == "alice"
    assert anonymous.principal is None

    page, total = await store.list_jobs(principal="alice", limit=2)
    assert ([j.id for j in page], total) == ([alice[2].id, alice[1].id], 3)
    page, total = await store.list_jobs(principal="alice", limit=2, offset=2)
    assert ([j.id for j in page], total) == ([alice[0].id], 3)
    everyone, total = await store.list_jobs()
    assert total == 5
    assert {j.id for j in everyone} == {*(j.id for j in alice), bob.id, anonymous.id}

    claimed = await claim_one(store)  # the oldest: alice's first
    assert claimed.job.id == alice[0].id
    assert await store.finish(claimed.job.id, claimed.token, {})
    await store.cancel(alice[1].id)
    await store.cancel(bob.id)
    for state, expected in [
        (State.COMPLETED, [alice[0].id]),
        (State.CANCELLED, [alice[1].id]),
        (State.PENDING, [alice[2].id]),
        (State.RUNNING, []),
    ]:
        page, total = await store.list_jobs(state, principal="alice")
        assert ([j.id for j in page], total) == (expected, len(expected)), state
    page, total = await store.list_jobs(State.CANCELLED, principal="bob")
    assert ([j.id for j in page], total) == ([bob.id], 1)
    assert await store.list_jobs(principal="carol") == ([], 0)


async def test_a_running_and_rescued_job_stays_its_principals(store: JobStore) -> None:
    job = await store.submit(new(principal="alice"))
    claim = await claim_one(store, lease=LONG)
    assert claim.job.principal == "alice"
    page, _ = await store.list_jobs(State.RUNNING, principal="alice")
    assert [j.id for j in page] == [job.id]
    assert await store.fail(job.id, claim.token, "flaky", retry=True)
    page, total = await store.list_jobs(State.PENDING, principal="alice")
    assert ([j.id for j in page], total) == ([job.id], 1)
    assert await store.list_jobs(State.RUNNING, principal="alice") == ([], 0)


async def test_models_are_listed_by_principal(store: JobStore) -> None:
    mine = model("m_alice", "job_a").model_copy(update={"principal": "alice"})
    theirs = model("m_bob", "job_b").model_copy(update={"principal": "bob"})
    nobodys = model("m_none", "job_c")
    for m in (mine, theirs, nobodys):
        await store.add_model(m)
    alices, total = await store.list_models(principal="alice")
    assert ([m.model_id for m in alices], total) == (["m_alice"], 1)
    assert (await store.get_model("m_bob")).principal == "bob"
    everyone, total = await store.list_models()
    assert ({m.model_id for m in everyone}, total) == ({"m_alice", "m_bob", "m_none"}, 3)
    assert await store.list_models(principal="carol") == ([], 0)
    # A principal's listing pages within its own models, and counts only those.
    for n in range(3):
        await store.add_model(
            model(f"m_alice{n}", f"job_a{n}").model_copy(update={"principal": "alice"})
        )
    page, total = await store.list_models(limit=2, offset=1, principal="alice")
    assert (len(page), total) == (2, 4)
    assert all(m.principal == "alice" for m in page)
