"""``emotion-edge bench``: the camera path timed on a clip replayed as a camera would deliver it.

By default the source (the demo clip unless ``--source`` names a video) is replayed live: paced at its frame
rate, the lores-sized plane, the live cadence, decoding on the replay thread as a camera's ISP would do it. The
frame work (detection, classification, tracking, event JSON) is timed as CPU time of the threads that do it.
``scripts/bench_camera.py`` runs this on the benchmark clips, beside the thesis loop, with 1, 2 and 4 threads.
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np

from .config import Config
from .metrics import peak_rss_mb
from .sinks import Sink


class _Collect(Sink):
    """Serialises each event (what the JSON outputs pay) and keeps its latency and faces."""

    name = "bench"

    def __init__(self):
        self.latency_ms: list[float] = []
        self.faces: list[int] = []

    def handle(self, event, frame):
        event.to_json()
        self.latency_ms.append(event.latency_ms)
        self.faces.append(len(event.faces))


def cpu_name() -> str:
    """What lscpu calls the CPU ("model name" on x86, "Model" on a Raspberry Pi)."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/cpuinfo").read_text().splitlines() if ":" in line)
    except OSError:
        fields = {}
    fields = {k.strip().lower(): v.strip() for k, v in fields.items()}
    return fields.get("model name") or fields.get("model") or platform.processor() or platform.machine()


def measure(cfg: Config, spec: str | None, frames: int) -> dict:
    """Run ``frames`` frames of ``spec`` through app.build's pipeline; numbers per processed frame."""
    from .app import Outputs, build

    sink = _Collect()
    pipe = build(cfg, spec or "demo:300", Outputs(extra=[sink]))
    src = pipe.source
    with src:
        wall0, proc0, decode0 = time.perf_counter(), time.process_time(), getattr(src, "cpu_s", 0.0)
        res = pipe.run(max_frames=frames)
        wall, proc = time.perf_counter() - wall0, time.process_time() - proc0
        decode = getattr(src, "cpu_s", 0.0) - decode0
    n = max(1, res.frames)
    st = pipe.stats
    lat = np.asarray(sink.latency_ms or [0.0])
    return {"source": src.description, "live": src.live, "frames": res.frames,
            "dropped": src.dropped, "main": list(pipe.last_main_size or ()),
            "plane": list(pipe.last_plane_shape or ()),
            "model": pipe.classifier.path.name, "scan_every": st.scan_every, "threads": cfg.detector.threads,
            "fps": res.frames / wall if wall else 0.0, "cpu_ms": 1000 * (proc - decode) / n,
            "process_cpu_ms": 1000 * proc / n,
            "stage_ms": {k: st.stage_total[k] / n for k in ("detect", "classify", "track", "sinks")},
            "classified_per_frame": st.classified / n, "faces_per_frame": float(np.mean(sink.faces or [0])),
            "latency_p50_ms": float(np.percentile(lat, 50)), "latency_p99_ms": float(np.percentile(lat, 99)),
            "peak_rss_mb": peak_rss_mb()}


def report(r: dict) -> str:
    lines = [f"{r['frames']} frames of {r['source']}"
             + (f" ({r['dropped']} dropped: the pipeline was busy)" if r["dropped"] else ""),
             f"CPU: {cpu_name()}; main {r['main'][0]}x{r['main'][1]}, detector plane {r['plane'][1]}x{r['plane'][0]}, "
             f"model {r['model']}, full scan every {r['scan_every']} frame(s), {r['threads']} thread(s)",
             "",
             f"  CPU ms per frame (frame work)  {r['cpu_ms']:8.2f}   (all threads but the replay's decoding)",
             f"  CPU ms per frame (process)     {r['process_cpu_ms']:8.2f}   (with decoding, as a camera's ISP would)",
             f"  fps                            {r['fps']:8.1f}",
             f"  latency p50 / p99 ms           {r['latency_p50_ms']:8.1f} / {r['latency_p99_ms']:.1f}",
             f"  peak RSS MB                    {r['peak_rss_mb']:8.0f}",
             f"  faces / classified per frame   {r['faces_per_frame']:8.2f} / {r['classified_per_frame']:.2f}"]
    lines += [f"  {stage + ' ms':<31}{ms:8.3f}" for stage, ms in r["stage_ms"].items()]
    return "\n".join(lines)


def run_bench(cfg: Config, spec: str | None, n: int, json_path: str | None = None, live: bool = True) -> int:
    from .classify import ModelError
    from .detect import DetectorError
    from .sources import SourceError

    if live:
        cfg = cfg.replace("camera", replay="live")
    try:
        r = measure(cfg, spec, n)
    except (SourceError, ModelError, DetectorError) as e:
        print(f"bench: {e}")
        return 1
    if not r["frames"]:
        print("bench: the source gave no frames")
        return 1
    print(("the camera path (source replayed live; --recorded for the file path)" if live else
           "the file path (file settings)") + "\n" + report(r))
    if json_path:
        Path(json_path).write_text(json.dumps(r, indent=1))
    return 0
