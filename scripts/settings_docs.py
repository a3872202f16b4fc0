"""Write docs/settings.md from the Settings class (tests/unit/test_settings_docs.py checks it).

.venv/bin/python scripts/settings_docs.py           # rewrite the page
.venv/bin/python scripts/settings_docs.py --check   # exit 1 when the page is out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aijobs.settings import settings_markdown

PAGE = Path(__file__).resolve().parents[1] / "docs" / "settings.md"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="only say whether it is up to date")
    if parser.parse_args().check:
        if PAGE.read_text(encoding="utf-8") != settings_markdown():
            print(f"{PAGE} is out of date: run {Path(__file__).name} to rewrite it")
            return 1
        print(f"{PAGE} is up to date")
        return 0
    PAGE.write_text(settings_markdown(), encoding="utf-8")
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
