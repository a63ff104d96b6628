"""JSON lines to stdout or a file: one event per line, flushed, so `| jq` and `tail -f` see it live."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from . import Sink

log = logging.getLogger(__name__)


class JsonLinesSink(Sink):
    name = "events"

    def __init__(self, target: str, inputs=()):
        self.target = target
        if target == "-":
            self.fh = sys.stdout
            self._own = False
        else:
            p = Path(target)
            if p.parent and not p.parent.exists():
                raise ValueError(f"--events {target}: folder {p.parent} does not exist")
            from ..files import check_output

            try:
                check_output(p, inputs)
            except OSError as e:
                raise ValueError(f"--events {e}") from None
            self.fh = open(p, "w", encoding="utf-8", buffering=1)
            self._own = True

    def handle(self, event, frame):
        try:
            self.fh.write(event.to_json() + "\n")
            self.fh.flush()
        except BrokenPipeError:
            # `emotion-edge run | head` closed the pipe: stop writing, keep the other outputs running.
            # Point the descriptor at /dev/null too, or Python complains when it flushes at exit.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.fh.fileno())
            os.close(devnull)
            log.warning("events: the reader closed the pipe; no more events on this output")
            self.fh = open(os.devnull, "w")
            self._own = True

    def close(self):
        if self._own:
            self.fh.close()
