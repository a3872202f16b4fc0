"""docs/settings.md is the Settings class rendered: it fails here when the two drift apart."""

from __future__ import annotations

from pathlib import Path

from aijobs.settings import Settings, settings_markdown

PAGE = Path(__file__).resolve().parents[2] / "docs" / "settings.md"


def test_docs_settings_page_matches_the_settings_class() -> None:
    assert PAGE.read_text(encoding="utf-8") == settings_markdown(), (
        "docs/settings.md is out of date: run `.venv/bin/python scripts/settings_docs.py`"
    )


def test_every_setting_is_documented_with_its_variable_and_description() -> None:
    page = PAGE.read_text(encoding="utf-8")
    for name, field in Settings.model_fields.items():
        assert field.description, f"Settings.{name} has no description"
        assert f"`AIJOBS_{name.upper()}`" in page
