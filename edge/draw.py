"""One drawing function for every view: the HDMI overlay (RGBA), annotated files and the
HTTP stream (BGR). Sharing it is what keeps the screen and the browser in agreement."""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from .events import Event, Face

# RGB, chosen to stay distinguishable for the common colour-vision deficiencies where possible.
COLOURS = {
    "angry": (230, 40, 40),
    "disgust": (120, 170, 30),
    "fear": (150, 60, 200),
    "happy": (255, 200, 0),
    "sad": (40, 110, 230),
    "surprise": (255, 120, 200),
    "neutral": (200, 200, 200),
}
FONT = cv2.FONT_HERSHEY_SIMPLEX


def colour(emotion: str, order: str) -> tuple[int, ...]:
    r, g, b = COLOURS.get(emotion, (255, 255, 255))
    if order == "rgba":
        return (r, g, b, 255)
    return (b, g, r)


def _text(canvas, text, org, scale, fg, order, thickness):
    bg = (0, 0, 0, 200) if order == "rgba" else (0, 0, 0)
    (tw, th), base = cv2.getTextSize(text, FONT, scale, thickness)
    x, y = org
    cv2.rectangle(canvas, (x, y - th - base - 2), (x + tw + 4, y + 2), bg, -1)
    cv2.putText(canvas, text, (x + 2, y - base + 1), FONT, scale, fg, thickness, cv2.LINE_AA)


def style(frame_h: int) -> tuple[float, int]:
    """Font scale and line thickness: readable on a TV across the room at 480 lines and up."""
    return max(0.5, frame_h / 720), max(1, round(frame_h / 300))


def label_rect(face: Face, frame_size) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of a face's label background, as drawn."""
    W, H = frame_size
    s, thick = style(H)
    (tw, th), base = cv2.getTextSize(label_text(face), FONT, s, thick)
    ox, oy = label_origin(face.box, (tw, th + base), (W, H))
    return ox, oy - th - base - 2, ox + tw + 4, oy + 2


def label_text(face: Face) -> str:
    if getattr(face, "still", False):
        return f"still: {face.emotion}"  # a poster or a photo: not counted as someone here
    return f"{face.emotion} {face.confidence:.0%}"


# Still faces and masks are drawn in grey: there, but not people.
STILL_COLOUR = {"bgr": (150, 150, 150), "rgba": (150, 150, 150, 200)}
MASK_COLOUR = {"bgr": (110, 110, 110), "rgba": (200, 200, 200, 90)}


def draw_masks(canvas: np.ndarray, polygons, order: str = "bgr") -> np.ndarray:
    """The masks (pixel polygons), faintly: a thin outline, so a user sees where no face is reported."""
    for poly in polygons:
        cv2.polylines(canvas, [poly.reshape(-1, 1, 2)], True, MASK_COLOUR[order], 1, cv2.LINE_AA)
    return canvas


def label_origin(box, text_size, frame_size) -> tuple[int, int]:
    """Baseline-left of a label: above the box, or inside its top edge when there is no room,
    always inside the frame."""
    x, y, w, h = box
    tw, th = text_size
    W, H = frame_size
    ox = int(min(max(0, x), max(0, W - tw - 4)))
    oy = y - 3 if y - th - 6 >= 0 else y + th + 6
    oy = int(min(max(th + 6, oy), H - 3))
    return ox, oy


def draw_faces(canvas: np.ndarray, faces, fps: float | None = None, order: str = "bgr", scores: bool = True) -> np.ndarray:
    """Draw boxes, ``emotion NN%`` labels, optional score bars and the fps onto ``canvas`` in place.

    ``order`` is "bgr" for a camera frame or "rgba" for a transparent overlay (H, W, 4).
    """
    H, W = canvas.shape[:2]
    s, thick = style(H)
    # Score panels must not hide another face, its label or its panel.
    boxes = [(int(f.box[0]), int(f.box[1]), int(f.box[0] + f.box[2]), int(f.box[1] + f.box[3])) for f in faces]
    labels = [label_rect(f, (W, H)) for f in faces]
    panels: list[tuple[int, int, int, int]] = []
    for i, f in enumerate(faces):
        x, y, w, h = (int(v) for v in f.box)
        c = STILL_COLOUR[order] if getattr(f, "still", False) else colour(f.emotion, order)
        if f.roll:
            # The square the detector found the leaning face in (RotatedRect angles turn clockwise on screen).
            corners = cv2.boxPoints(((x + w / 2, y + h / 2), (w, h), -f.roll))
            cv2.polylines(canvas, [np.round(corners).astype(np.int32)], True, c, thick, cv2.LINE_AA)
        else:
            cv2.rectangle(canvas, (x, y), (x + w - 1, y + h - 1), c, thick)
        text = label_text(f)
        (tw, th), base = cv2.getTextSize(text, FONT, s, thick)
        _text(canvas, text, label_origin((x, y, w, h), (tw, th + base), (W, H)), s, c, order, thick)
        if scores and f.scores and h >= 60:
            others = boxes[:i] + boxes[i + 1:] + labels[:i] + labels[i + 1:] + panels
            panel = panel_rect(f, (W, H), others)
            if panel:
                _panel(canvas, f, panel, order)
                panels.append(panel)
            else:
                _bars(canvas, f, (x, y, w, h), order)
    if fps:  # 0 until a rate is measured: a single photo has none, so it gets no "0.0 fps"
        white = (255, 255, 255, 255) if order == "rgba" else (255, 255, 255)
        _text(canvas, f"{fps:.1f} fps", (4, int(24 * s) + 8), s, white, order, thick)
    return canvas


def panel_rect(face: Face, frame_size, avoid=()) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) of a face's labelled score panel beside its box (right, else left), or None when
    the face is too small for legible rows or neither side has room in the frame without covering a
    rectangle of ``avoid`` (other faces, their panels): the thin bars are drawn instead."""
    W, H = frame_size
    x, y, w, h = (int(v) for v in face.box)
    s, _ = style(H)
    rows = len(face.scores)
    row = min(h // max(rows, 1), round(22 * s))
    if not rows or row < PANEL_MIN_ROW:
        return None
    fs, label_w = _names(tuple(face.scores), row)
    pw, ph = label_w + 4 * row + 10, rows * row + 6
    y0 = min(max(0, y), max(0, H - ph))
    for x0 in (x + w + 4, x - 4 - pw):
        r = (x0, y0, x0 + pw, min(H, y0 + ph))
        if x0 >= 0 and x0 + pw <= W and not any(_overlap(r, a) for a in avoid):
            return r
    return None


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


PANEL_MIN_ROW = 12  # px per class row; below that the names are unreadable


@lru_cache(maxsize=32)
def _names(names: tuple[str, ...], row: int) -> tuple[float, int]:
    """Font scale for rows ``row`` px high (FONT's "Ag" spans about 30 px at scale 1) and the widest name;
    kept, since every frame asks again for the same few row heights."""
    fs = (row - 3) / 30
    return fs, max(cv2.getTextSize(k, FONT, fs, 1)[0][0] for k in names)


def _panel(canvas, face: Face, rect, order) -> None:
    """Each class's name and a bar of its score on a darkened panel at ``rect`` (from panel_rect), in
    the canonical order so a class is always on the same row."""
    x0, y0, x1, y1 = rect
    if order == "rgba":
        canvas[y0:y1, x0:x1] = (0, 0, 0, 160)
    else:
        canvas[y0:y1, x0:x1] //= 3
    row = (y1 - y0 - 6) // len(face.scores)
    fs, label_w = _names(tuple(face.scores), row)
    bar_x, bar_w = x0 + 3 + label_w + 4, 4 * row
    # Names in light grey: blue and purple text is hard to read on the dark panel; the bars carry the colour.
    grey = (230, 230, 230, 255) if order == "rgba" else (230, 230, 230)
    for i, (label, p) in enumerate(face.scores.items()):
        top = y0 + 3 + i * row
        c = colour(label, order)
        cv2.putText(canvas, label, (x0 + 3, top + row - 4), FONT, fs, grey, 1, cv2.LINE_AA)
        length = int(round(bar_w * min(max(float(p), 0.0), 1.0)))
        if length:
            cv2.rectangle(canvas, (bar_x, top + 2), (bar_x + length - 1, top + row - 3), c, -1)


def _bars(canvas, face: Face, box, order):
    """Seven thin bars under the box (or inside its bottom when at the frame's edge), for faces too
    small for the labelled panel."""
    H, W = canvas.shape[:2]
    x, y, w, h = box
    n = len(face.scores)
    bar_h = max(3, h // 30)
    gap = 1
    total = n * (bar_h + gap)
    top = y + h + 3 if y + h + 3 + total <= H else y + h - total - 3
    top = max(0, top)
    width = max(10, min(w, W - x))
    for i, (label, p) in enumerate(face.scores.items()):
        yy = top + i * (bar_h + gap)
        x0 = max(0, x)
        cv2.rectangle(canvas, (x0, yy), (x0 + max(1, int(width * p)), yy + bar_h - 1), colour(label, order), -1)


def overlay_rgba(size: tuple[int, int], event: Event, scores: bool = True, masks=None) -> np.ndarray:
    """A transparent (H, W, 4) uint8 overlay for picamera2's ``set_overlay``; ``masks`` an edge.masks.Masks."""
    W, H = size
    ov = np.zeros((H, W, 4), np.uint8)
    if masks:
        draw_masks(ov, masks.pixels((W, H)), "rgba")
    return draw_faces(ov, event.faces, event.fps, order="rgba", scores=scores)


def annotate_bgr(frame_bgr: np.ndarray, event: Event, scores: bool = True, masks=None) -> np.ndarray:
    """A copy of the camera frame with the same drawing as the overlay."""
    canvas = frame_bgr.copy()
    if masks:
        draw_masks(canvas, masks.pixels((canvas.shape[1], canvas.shape[0])), "bgr")
    return draw_faces(canvas, event.faces, event.fps, order="bgr", scores=scores)
