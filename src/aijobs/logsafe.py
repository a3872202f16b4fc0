"""Log lines nobody can forge: control characters in what a log line quotes are escaped.

A job id in a URL path, a data path, a model type or an error text can come from a user; written
into a log as it is, a newline in it would start a line of the user's own making (a fake
"ERROR ..." entry, or terminal escapes for whoever reads the log). The filter escapes every
argument a record interpolates, so the format string (ours) keeps its shape, and so do
formatters that read the arguments themselves (uvicorn's access log).
"""

from __future__ import annotations

import logging
import re
from typing import Any

# C0 and C1 controls, DEL, and the Unicode line and paragraph separators.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_PLAIN = (int, float, bool, type(None))
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def encodable(text: str) -> str:
    """`text` as it can be written in UTF-8: a lone surrogate (echoed from a user's JSON) is
    written as its escape, so the text still names it."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def escape_controls(text: str) -> str:
    """`text` with each control character written as its escape (\\n as \\x0a)."""
    return _CONTROL.sub(
        lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 256 else f"\\u{ord(m[0]):04x}", text
    )


def _escaped(value: Any) -> Any:
    return value if isinstance(value, _PLAIN) else escape_controls(str(value))


class EscapeControlCharacters(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_escaped(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _escaped(v) for k, v in record.args.items()}
        return True


def install() -> None:
    """Escape on every handler of the root logger and on uvicorn's loggers (whose records do
    not reach the root's handlers); installing twice changes nothing."""
    targets: list[logging.Filterer] = [*logging.getLogger().handlers]
    targets += [logging.getLogger(name) for name in UVICORN_LOGGERS]
    for target in targets:
        if not any(isinstance(f, EscapeControlCharacters) for f in target.filters):
            target.addFilter(EscapeControlCharacters())
