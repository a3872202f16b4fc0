"""Write docs/settings.md from the Settings class (tests/unit/test_settings_docs.py checks it).

.venv/bin/python scripts/settings_docs.py
"""

from __future__ import annotations

from pathlib import Path

from aijobs.settings import settings_markdown

PAGE = Path(__file__).resolve().parents[1] / "docs" / "settings.md"


def main() -> None:
    PAGE.write_text(settings_markdown(), encoding="utf-8")
    print(f"wrote {PAGE}")


if __name__ == "__main__":
    main()
