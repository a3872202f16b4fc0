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


def test_the_commands_name_a_setting_not_allowed_and_exit_2(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One line per variable, the value left out (it may be a secret), no traceback."""
    from typer.testing import CliRunner

    from aijobs.cli import app

    monkeypatch.setenv("AIJOBS_REDIS_POOL_SIZE", "4")
    monkeypatch.setenv("AIJOBS_PORT", "eighty")
    for command in (["serve"], ["worker", "-q", "sklearn"], ["up"], ["keys", "list"]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 2, (command, result.output)
        assert result.output.splitlines() == [
            "error: AIJOBS_PORT: Input should be a valid integer, unable to parse string as an "
            "integer",
            "error: AIJOBS_REDIS_POOL_SIZE: Input should be greater than or equal to 8",
        ], command


def test_a_setting_with_a_former_name_is_named_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """pydantic reports a field with aliases by its alias, which already carries the prefix."""
    from typer.testing import CliRunner

    from aijobs.cli import app

    monkeypatch.setenv("AIJOBS_RETAIN_JOBS", "-5")
    result = CliRunner().invoke(app, ["worker", "-q", "sklearn"])
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        "error: AIJOBS_RETAIN_JOBS: Input should be greater than or equal to 0"
    ]
