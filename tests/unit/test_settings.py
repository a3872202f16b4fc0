"""Settings refuse what the system cannot run with."""

import pytest
from pydantic import ValidationError

from aijobs.settings import Settings


def test_a_redis_pool_smaller_than_its_kept_connections_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Up to four connections are kept (the job-end subscription and three lanes): a pool of
    # four would leave a worker's claims and renewals none.
    monkeypatch.setenv("AIJOBS_REDIS_POOL_SIZE", "4")
    with pytest.raises(ValidationError, match="redis_pool_size"):
        Settings()
    monkeypatch.setenv("AIJOBS_REDIS_POOL_SIZE", "8")
    assert Settings().redis_pool_size == 8
