"""The mood summary for dashboards: per interval, how long someone was there and how the faces felt.

Fed every frame by the MQTT sink (capture thread) and taken by its publisher thread, hence the lock. Shares are
face-time weighted smoothed scores: a face seen for 10 s counts ten times one seen for 1 s, and a 60/40
happy/neutral face adds to both.
"""
from __future__ import annotations

import threading
import time

import numpy as np

# A gap longer than this between two frames (a stalled camera, a paused clip) counts as this long.
MAX_FRAME_GAP_S = 1.0
# A face absent for longer than this has left (its entry in tracks_ended); a shorter absence is the tracker
# keeping the id of someone who looked away ([tracker] max_missed, a second at 30 fps).
GONE_S = 1.0


class MoodSummary:
    def __init__(self, labels):
        self.labels = tuple(labels)
        self._lock = threading.Lock()
        self._tracks: dict[int, dict] = {}  # id -> first, last, summed scores (over the track's whole life)
        self._reset(time.monotonic())
        self._last_t: float | None = None

    def _reset(self, now: float) -> None:
        self._start = now
        self._frames = 0
        self._presence = 0.0
        self._face_time = 0.0
        self._mass = np.zeros(len(self.labels))
        self._seen: set[int] = set()
        self._ended: list[dict] = []

    def add(self, event, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            dt = 0.0 if self._last_t is None else min(MAX_FRAME_GAP_S, max(0.0, now - self._last_t))
            self._last_t = now
            self._frames += 1
            ids = set()
            people = getattr(event, "people", event.faces)  # still faces (posters) are no one's mood
            for f in people:
                ids.add(f.id)
                scores = np.array([f.scores.get(k, 0.0) for k in self.labels])
                self._mass += scores * dt
                self._face_time += dt
                t = self._tracks.setdefault(f.id, {"first": now, "last": now, "mass": np.zeros(len(self.labels))})
                t["last"] = now
                t["mass"] += scores
            if people:
                self._presence += dt
            self._seen |= ids
            self._end_gone(now)

    def _end_gone(self, now: float) -> None:
        for gone in [i for i, t in self._tracks.items() if now - t["last"] > GONE_S]:
            t = self._tracks.pop(gone)
            self._ended.append({"id": gone, "dwell_s": round(t["last"] - t["first"], 1),
                                "dominant": self.labels[int(np.argmax(t["mass"]))]})

    @property
    def frames(self) -> int:
        """Frames in the interval so far."""
        with self._lock:
            return self._frames

    def take(self, now: float | None = None) -> dict:
        """The summary of the interval since the last take, and a new interval."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._end_gone(now)
            # Without a face there is no share to speak of: null (unknown in Home Assistant), not a row of zeros
            # that drags long-term means down.
            shares = self._mass / self._face_time if self._face_time > 0 else None
            out = {"interval_s": round(now - self._start, 1), "frames": self._frames, "faces_seen": len(self._seen),
                   "presence_s": round(self._presence, 1), "face_time_s": round(self._face_time, 1),
                   "shares": None if shares is None else {k: round(float(v), 4) for k, v in zip(self.labels, shares)},
                   "dominant": self.labels[int(np.argmax(shares))] if self._face_time > 0 else None,
                   "tracks_ended": self._ended}
            self._reset(now)
        return out
