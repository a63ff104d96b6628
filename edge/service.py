"""systemd integration: sd_notify (READY, STATUS, WATCHDOG, STOPPING) and journald logging.

systemd-python (apt ``python3-systemd`` on the Pi) is used when importable; otherwise a few
lines speak the notify protocol on ``$NOTIFY_SOCKET`` directly, so the same code runs under
systemd, in tests and on machines without it.
"""
from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time

log = logging.getLogger(__name__)


def _socket_notify(message: str) -> bool:
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):  # abstract namespace
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(addr)
            s.sendall(message.encode())
        return True
    except OSError as e:
        log.debug("sd_notify %r failed: %s", message, e)
        return False


def _backend():
    try:
        from systemd import daemon  # type: ignore[import-not-found]

        return lambda msg: bool(daemon.notify(msg))
    except ImportError:
        return _socket_notify


class Notifier:
    """Thread-safe; a no-op outside systemd (no ``$NOTIFY_SOCKET``)."""

    def __init__(self):
        self._send = _backend()
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        self.watchdog_s = int(usec) / 1e6 if usec.isdigit() and (not pid or pid == str(os.getpid())) else 0.0
        self._last_ping = 0.0
        self._lock = threading.Lock()
        self.ready_sent = False

    def notify(self, message: str) -> bool:
        if not self.enabled:
            return False
        with self._lock:
            return self._send(message)

    def ready(self, status: str = "") -> None:
        if not self.ready_sent:
            self.ready_sent = True
            self.notify("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def status(self, text: str) -> None:
        self.notify(f"STATUS={text}")

    def watchdog(self) -> None:
        """Called from the capture loop after each frame; rate-limited to a quarter of the
        watchdog period so a 30 fps loop does not send 30 datagrams a second."""
        if not self.watchdog_s:
            return
        now = time.monotonic()
        if now - self._last_ping >= self.watchdog_s / 4:
            self._last_ping = now
            self.notify("WATCHDOG=1")

    def stopping(self) -> None:
        self.notify("STOPPING=1")


def under_journal() -> bool:
    """True when stderr is connected to journald (systemd sets $JOURNAL_STREAM to its dev:inode)."""
    js = os.environ.get("JOURNAL_STREAM", "")
    if not js:
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return js == f"{st.st_dev}:{st.st_ino}"


class _PriorityPrefix(logging.Formatter):
    """``<3>message``: journald reads the syslog priority from this prefix on stderr lines."""

    PRIO = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}

    def format(self, record):
        return f"<{self.PRIO.get(record.levelno, 6)}>{super().format(record)}"


_configured = False


def setup_logging(level: str = "info") -> str:
    """Configure the root logger once; returns "journal", "stderr-journal" or "stderr"."""
    global _configured
    root = logging.getLogger()
    if _configured:
        root.setLevel(level.upper())
        return "again"
    _configured = True
    root.setLevel(level.upper())
    for h in list(root.handlers):
        root.removeHandler(h)
    mode = "stderr"
    if under_journal():
        try:
            from systemd.journal import JournalHandler  # type: ignore[import-not-found]

            handler = JournalHandler(SYSLOG_IDENTIFIER="emotion-edge")
            handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
            mode = "journal"
        except ImportError:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(_PriorityPrefix("%(name)s: %(message)s"))
            mode = "stderr-journal"
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
    from .redact import RedactingFilter

    handler.addFilter(RedactingFilter())
    root.addHandler(handler)
    # Library chatter (paho, TFLite delegates) stays out of the operator's view unless debugging.
    for noisy in ("PIL", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return mode
