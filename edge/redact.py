"""Secrets out of every line the program prints: a stream URL's password (rtsp://admin:PASS@cam/...) shows
as *** in the log, the checks and the self-test, the report users paste into bug reports."""
from __future__ import annotations

import logging
import re

_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/@:\s]*):([^/@\s]+)@")
# Anything outside printable text (a control character in a file name could forge a log line).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x85\u2028\u2029]")


def redact(text: str) -> str:
    """The text with each URL's password replaced by *** and control characters escaped."""
    text = _USERINFO.sub(lambda m: f"{m.group(1)}{m.group(2)}:***@", text)
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class RedactingFilter(logging.Filter):
    """On a handler: every record leaves with its message redacted (the arguments merged in first)."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        clean = redact(msg)
        if clean != msg:
            record.msg, record.args = clean, None
        return True
