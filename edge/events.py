"""The per-frame event: one JSON object per processed frame (schema in ``edge/schemas/event.json``)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Face:
    id: int
    box: tuple[int, int, int, int]  # x, y, w, h in main-frame pixels
    emotion: str
    confidence: float
    scores: dict[str, float]
    roll: float = 0.0  # degrees counter-clockwise on screen; the box is the face's square turned by it
    padded: bool = False  # found only with a border added around the photo (the face fills the picture)
    still: bool = False  # not moved nor changed for [tracker] still_after s: a poster, a photo (edge/still.py)

    def to_dict(self) -> dict:
        d = {"id": self.id, "box": list(self.box), "emotion": self.emotion,
             "confidence": round(self.confidence, 4), "scores": {k: round(v, 4) for k, v in self.scores.items()}}
        if self.roll:  # only faces found tilted carry it: upright ones keep the original, shorter event
            d["roll"] = self.roll
        if self.padded:
            d["found"] = "padded"
        if self.still:
            d["still"] = True
        return d


@dataclass(frozen=True)
class Event:
    device: str
    seq: int
    wall_time: float
    frame_w: int
    frame_h: int
    faces: tuple[Face, ...]
    latency_ms: float
    fps: float
    source: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def ts(self) -> str:
        return iso_utc(self.wall_time)

    def to_dict(self) -> dict:
        d = {"schema": SCHEMA_VERSION, "device": self.device, "seq": self.seq, "ts": self.ts,
             "frame": {"w": self.frame_w, "h": self.frame_h}, "faces": [f.to_dict() for f in self.faces],
             "latency_ms": round(self.latency_ms, 2), "fps": round(self.fps, 2)}
        if self.source is not None:
            d["source"] = self.source
        return d

    @cached_property
    def _json(self) -> str:
        # Several outputs (stdout, MQTT, HTTP view) want the same text each frame: encode once.
        return json.dumps(self.to_dict(), separators=(",", ":"))

    def to_json(self) -> str:
        return self._json

    @property
    def largest(self) -> Face | None:
        return max(self.faces, key=lambda f: f.box[2] * f.box[3], default=None)

    @property
    def people(self) -> tuple[Face, ...]:
        """The faces that count as people here: all but still ones (posters, photos on the wall)."""
        return tuple(f for f in self.faces if not f.still)


def iso_utc(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
