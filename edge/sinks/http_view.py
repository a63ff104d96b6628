"""A live view for headless Pis: ``/`` a small page, ``/stream`` annotated MJPEG, ``/event`` the
latest event as JSON.

The pipeline only hands over a reference to the newest frame; an encoder thread draws and
JPEG-encodes it, and only while someone is watching, at most ``http_max_fps`` times a second.
Each client always gets the newest JPEG, so a slow client skips frames instead of queueing them.
"""
from __future__ import annotations

import base64
import hmac
import logging
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2

from ..config import DisplayConfig, parse_hostport
from ..draw import annotate_bgr
from . import Sink

log = logging.getLogger(__name__)

BOUNDARY = "emotionedgeframe"

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>emotion-edge</title>
<style>
body{font-family:system-ui,sans-serif;background:#111;color:#eee;margin:0;padding:1rem}
main{display:flex;flex-wrap:wrap;gap:1rem;align-items:flex-start}
img{max-width:100%;background:#222;border-radius:4px}
pre{background:#1c1c1c;padding:.75rem;border-radius:4px;min-width:18rem;max-width:32rem;overflow:auto;font-size:.8rem}
h1{font-size:1.1rem;margin:0 0 .75rem}
</style></head>
<body><h1>emotion-edge</h1><main>
<img id="stream" src="stream" alt="annotated camera stream" width="640" height="480">
<div><div id="summary">waiting for the first event…</div><pre id="event"></pre></div>
</main>
<script>
async function poll(){
  try{
    const r = await fetch('event', {cache:'no-store'});
    if(r.status === 200){  // 204 until the first frame has been processed
      const e = await r.json();
      const f = e.faces || [];
      document.getElementById('summary').textContent =
        f.length ? f.map(x => `#${x.id} ${x.emotion} ${Math.round(x.confidence*100)}%`).join(' · ')
                 : 'no face';
      document.getElementById('event').textContent = JSON.stringify(e, null, 1);
    }
  }catch(err){}
  setTimeout(poll, 500);
}
poll();
</script></body></html>
"""


class _Shared:
    """State shared between the pipeline, the encoder thread and the HTTP threads."""

    def __init__(self):
        self.cond = threading.Condition()
        self.event_json = b""
        self.pending = None  # (frame_bgr, event) waiting to be encoded
        self.jpeg = b""
        self.jpeg_seq = 0
        self.clients = 0
        self.encoded = 0
        self.closed = False


class HttpViewSink(Sink):
    needs_image = True
    name = "http view"

    def __init__(self, cfg: DisplayConfig):
        self.cfg = cfg
        self.host, self.port = parse_hostport(cfg.http, "display.http")
        self.password = None
        if cfg.http_password_file:
            try:
                self.password = Path(cfg.http_password_file).read_text().strip()
            except OSError as e:
                raise ValueError(f"display.http_password_file: {e.strerror or e}") from None
        self.shared = _Shared()
        self.server = None
        self._threads = []
        self._last_pending = 0.0

    def start(self):
        shared, password = self.shared, self.password

        class Handler(BaseHTTPRequestHandler):
            server_version = "emotion-edge"

            def log_message(self, fmt, *args):
                log.debug("http %s: " + fmt, self.client_address[0], *args)

            def _authorised(self) -> bool:
                if password is None:
                    return True
                header = self.headers.get("Authorization", "")
                if header.startswith("Basic "):
                    try:
                        _, _, given = base64.b64decode(header[6:]).decode().partition(":")
                        if hmac.compare_digest(given.encode(), password.encode()):
                            return True
                    except (ValueError, UnicodeDecodeError):
                        pass
                self.send_response(HTTPStatus.UNAUTHORIZED)
                self.send_header("WWW-Authenticate", 'Basic realm="emotion-edge"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return False

            def _send(self, body: bytes, ctype: str):
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if not self._authorised():
                    return
                path = self.path.split("?")[0]
                if path == "/":
                    self._send(PAGE.encode(), "text/html; charset=utf-8")
                elif path == "/event":
                    with shared.cond:
                        body = shared.event_json
                    if not body:
                        self.send_response(HTTPStatus.NO_CONTENT)
                        self.end_headers()
                        return
                    self._send(body, "application/json")
                elif path == "/stream":
                    self._stream()
                else:
                    self.send_error(HTTPStatus.NOT_FOUND)

            def _stream(self):
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                with shared.cond:
                    shared.clients += 1
                    shared.cond.notify_all()
                seen = 0
                try:
                    while True:
                        with shared.cond:
                            shared.cond.wait_for(lambda: shared.jpeg_seq != seen or shared.closed, timeout=1.0)
                            if shared.closed:
                                return
                            if shared.jpeg_seq == seen:
                                continue
                            seen, jpg = shared.jpeg_seq, shared.jpeg
                        self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpg)}"
                                         "\r\n\r\n".encode() + jpg + b"\r\n")
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError, TimeoutError):
                    pass
                finally:
                    with shared.cond:
                        shared.clients -= 1

        try:
            self.server = ThreadingHTTPServer((self.host, self.port), Handler)
        except OSError as e:
            raise OSError(f"display.http: cannot listen on {self.host}:{self.port}: {e.strerror or e}") from None
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        for target, name in ((self.server.serve_forever, "http-view"), (self._encoder, "http-encode")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        log.info("live view on http://%s:%d/%s", self.host, self.port, " (password)" if self.password else "")

    def _encoder(self):
        shared, period = self.shared, 1.0 / self.cfg.http_max_fps
        while True:
            with shared.cond:
                shared.cond.wait_for(lambda: shared.pending is not None or shared.closed, timeout=1.0)
                if shared.closed:
                    return
                item, shared.pending = shared.pending, None
            if item is None:
                continue
            t0 = time.monotonic()
            img, event = item
            ok, jpg = cv2.imencode(".jpg", annotate_bgr(img, event, self.cfg.scores), [cv2.IMWRITE_JPEG_QUALITY, 75])
            if ok:
                with shared.cond:
                    shared.jpeg, shared.jpeg_seq = jpg.tobytes(), shared.jpeg_seq + 1
                    shared.encoded += 1
                    shared.cond.notify_all()
            time.sleep(max(0.0, period - (time.monotonic() - t0)))

    def handle(self, event, frame):
        shared = self.shared
        body = event.to_json().encode()
        with shared.cond:
            shared.event_json = body
            if shared.clients and frame.main is not None:
                # Replace, never queue: the encoder takes the newest frame when it is ready.
                shared.pending = (frame.main, event)
                shared.cond.notify_all()

    def close(self):
        with self.shared.cond:
            self.shared.closed = True
            self.shared.cond.notify_all()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
