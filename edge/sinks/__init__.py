"""Where events go. Every sink is fast or hands off through a bounded, drop-oldest queue:
the capture loop never waits on a consumer."""
from __future__ import annotations

import abc
import collections
import threading

from ..events import Event
from ..sources.base import Frame


class Sink(abc.ABC):
    #: True when the sink draws on the camera image, so the source must deliver ``frame.main``.
    needs_image: bool = False
    name: str = "sink"

    def start(self) -> None:
        pass

    @abc.abstractmethod
    def handle(self, event: Event, frame: Frame) -> None: ...

    def close(self) -> None:
        pass


class DropOldestQueue:
    """A bounded hand-off between the pipeline and a consumer thread: ``put`` never blocks;
    when full, the oldest item goes and ``dropped`` counts it."""

    def __init__(self, maxsize: int):
        self._items: collections.deque = collections.deque()
        self.maxsize = maxsize
        self._cond = threading.Condition()
        self.dropped = 0
        self.put_count = 0

    def put(self, item) -> None:
        with self._cond:
            if len(self._items) >= self.maxsize:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self.put_count += 1
            self._cond.notify()

    def get(self, timeout: float | None = None):
        """The oldest item, or None after ``timeout`` seconds with nothing queued."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items, timeout=timeout):
                return None
            return self._items.popleft()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)
