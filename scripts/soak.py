#!/usr/bin/env python3
"""Soak: run emotion-edge for a long time on a looping clip with MQTT and the HTTP view on, a browser-like
client on the stream and a subscriber on the events, and watch the process for leaks.

    .venv/bin/python scripts/soak.py --minutes 60 --every 30

Every ``--every`` seconds it samples the process's RSS, open files and threads, and at the end prints the
table and each one's slope over the second half (after warm-up), per 10 minutes. Needs mosquitto (apt) and
the test extra (the demo clip). Not part of the test suite: it takes as long as you ask.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sample(pid: int) -> tuple[float, int, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    rss_mb = int(fields["VmRSS"].split()[0]) / 1024
    return rss_mb, len(os.listdir(f"/proc/{pid}/fd")), int(fields["Threads"])


def watch_stream(url: str, stop: threading.Event, counter: list) -> None:
    while not stop.is_set():
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                while not stop.is_set():
                    chunk = r.read1(65536)
                    if not chunk:
                        break
                    counter[0] += len(chunk)
        except OSError:
            time.sleep(1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    args = ap.parse_args()
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        print("soak: mosquitto is not installed (apt install mosquitto)", file=sys.stderr)
        return 1
    from edge.sources.demo import write_demo_video

    work = Path(tempfile.mkdtemp(prefix="soak-"))
    clip = work / "clip.avi"
    write_demo_video(clip, frames=300)
    mport, hport = free_port(), free_port()
    (work / "m.conf").write_text(f"listener {mport} 127.0.0.1\nallow_anonymous true\n"
                                 + ("user root\n" if os.geteuid() == 0 else ""))
    broker = subprocess.Popen([exe, "-c", str(work / "m.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (work / "c.toml").write_text(f'[camera]\nloop = true\n[mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = {mport}\n'
                                 f'[display]\nhttp = "127.0.0.1:{hport}"\n[service]\ndevice = "soak"\n')
    time.sleep(0.5)
    run = subprocess.Popen([sys.executable, "-m", "edge", "run", "--config", str(work / "c.toml"), "--source", str(clip),
                            "--events", "none"], stdout=subprocess.DEVNULL, stderr=open(work / "run.log", "w"))
    sub = subprocess.Popen(["mosquitto_sub", "-p", str(mport), "-t", "emotion-edge/soak/#"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) if shutil.which("mosquitto_sub") else None
    stop, streamed = threading.Event(), [0]
    time.sleep(5)
    viewer = threading.Thread(target=watch_stream, args=(f"http://127.0.0.1:{hport}/stream", stop, streamed), daemon=True)
    viewer.start()
    rows = []
    t0 = time.monotonic()
    print(f"{'min':>6} {'RSS MB':>8} {'files':>6} {'threads':>8} {'stream MB':>10}", flush=True)
    try:
        while time.monotonic() - t0 < args.minutes * 60:
            if run.poll() is not None:
                print(f"soak: emotion-edge exited with {run.returncode}; see {work / 'run.log'}", file=sys.stderr)
                return 1
            rss, files, threads = sample(run.pid)
            m = (time.monotonic() - t0) / 60
            rows.append((m, rss, files, threads))
            print(f"{m:6.1f} {rss:8.1f} {files:6d} {threads:8d} {streamed[0] / 1e6:10.1f}", flush=True)
            time.sleep(args.every)
    finally:
        stop.set()
        run.send_signal(signal.SIGTERM)
        run.wait(20)
        if sub:
            sub.terminate()
        broker.terminate()
    a = np.array(rows)
    half = a[len(a) // 2:] if len(a) >= 4 else a
    print(f"soak: {args.minutes:g} min, {len(rows)} samples; slope over the second half, per 10 min:")
    for i, name in ((1, "RSS MB"), (2, "open files"), (3, "threads")):
        slope = np.polyfit(half[:, 0], half[:, i], 1)[0] * 10 if len(half) >= 2 else 0.0
        print(f"  {name:<10} {slope:+.2f}  (first {a[0, i]:g}, last {a[-1, i]:g}, max {a[:, i].max():g})")
    print(f"  exit status {run.returncode}; log {work / 'run.log'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
