#!/usr/bin/env python3
"""A live table of faces and emotions from every emotion-edge device on a broker.

    python scripts/subscribe.py --host raspberrypi.local
    python scripts/subscribe.py --host broker --username me --password-file ~/.mqtt-pass --device kitchen

Needs only paho-mqtt (pip install paho-mqtt).
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time

import paho.mqtt.client as mqtt


def bar(p: float, width: int = 10) -> str:
    n = int(round(p * width))
    return "#" * n + "." * (width - n)


def render(devices: dict, stats: dict, avail: dict) -> str:
    lines = [f"emotion-edge live  {time.strftime('%H:%M:%S')}   (Ctrl-C to quit)", ""]
    if not devices and not avail:
        lines.append("waiting for events…")
    for dev in sorted(set(devices) | set(avail)):
        ev = devices.get(dev)
        st = stats.get(dev, {})
        head = f"[{dev}] {avail.get(dev, '?')}"
        if ev:
            head += f"  seq {ev['seq']}  {ev['fps']:.1f} fps  latency {ev['latency_ms']:.0f} ms"
        if st:
            head += f"  dropped {st.get('events_dropped', 0)}  reconnects {st.get('reconnects', 0)}"
        lines.append(head)
        faces = ev["faces"] if ev else []
        if not faces:
            lines.append("    no face")
        for f in faces:
            x, y, w, h = f["box"]
            top = sorted(f["scores"].items(), key=lambda kv: -kv[1])[:3]
            alts = "  ".join(f"{k} {v:.0%}" for k, v in top[1:])
            lines.append(f"    #{f['id']:<4} {f['emotion']:<9} {bar(f['confidence'])} {f['confidence']:4.0%}"
                         f"   box {x},{y} {w}x{h}   then {alts}")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="localhost")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--prefix", default="emotion-edge")
    p.add_argument("--device", default="+", help="one device name, or + for all")
    p.add_argument("--username")
    p.add_argument("--password-file")
    p.add_argument("--tls", action="store_true")
    p.add_argument("--once", action="store_true", help="print the table for the first event and exit")
    args = p.parse_args(argv)

    lock = threading.Lock()
    devices: dict = {}
    stats: dict = {}
    avail: dict = {}
    first = threading.Event()

    def on_connect(c, u, flags, rc, props=None):
        if rc.is_failure:
            print(f"broker refused the connection: {rc}", file=sys.stderr)
            return
        base = f"{args.prefix}/{args.device}"
        for t in ("events", "stats", "availability"):
            c.subscribe(f"{base}/{t}")

    def on_message(c, u, msg):
        parts = msg.topic.split("/")
        dev, kind = parts[-2], parts[-1]
        with lock:
            try:
                if kind == "availability":
                    avail[dev] = msg.payload.decode()
                elif kind == "events":
                    devices[dev] = json.loads(msg.payload)
                    first.set()
                elif kind == "stats":
                    stats[dev] = json.loads(msg.payload)
            except (ValueError, UnicodeDecodeError):
                pass

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    if args.username:
        pw = open(args.password_file).read().strip() if args.password_file else None
        client.username_pw_set(args.username, pw)
    if args.tls:
        client.tls_set()
    client.on_connect = on_connect
    client.on_message = on_message
    client.connect_async(args.host, args.port)
    client.loop_start()
    try:
        if args.once:
            if not first.wait(30):
                print("no event within 30 s", file=sys.stderr)
                return 1
            with lock:
                print(render(devices, stats, avail))
            return 0
        while True:
            with lock:
                text = render(devices, stats, avail)
            sys.stdout.write("\x1b[H\x1b[2J" + text + "\n")
            sys.stdout.flush()
            time.sleep(0.3)
    except KeyboardInterrupt:
        return 0
    finally:
        client.disconnect()
        client.loop_stop()


if __name__ == "__main__":
    sys.exit(main())
