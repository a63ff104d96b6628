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
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2

from ..config import DisplayConfig, parse_hostport
from ..draw import annotate_bgr
from ..secrets import read_secret
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
<div style="position:relative;line-height:0">
<img id="stream" src="stream" alt="annotated camera stream" width="640" height="480">
<canvas id="pick" style="position:absolute;left:0;top:0;width:100%;height:100%;cursor:crosshair;display:none"></canvas>
</div>
<div><div id="summary">waiting for the first event…</div><pre id="event"></pre>
<h1>Masks</h1>
<p><button id="draw">draw a mask</button> <button id="next">next polygon</button> <button id="undo">undo point</button>
<button id="clear">clear</button></p>
<p>Click the corners of a TV, a poster or a window on the picture; paste the line below into the [detector]
section of the config and restart. No face whose centre lies inside is reported.</p>
<pre id="toml">masks = []</pre></div>
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
const pick = document.getElementById('pick'), img = document.getElementById('stream');
let polys = [[]];
function show(){
  const done = polys.filter(p => p.length >= 3);
  document.getElementById('toml').textContent = 'masks = ' + JSON.stringify(done);
  pick.width = img.clientWidth; pick.height = img.clientHeight;
  const g = pick.getContext('2d'); g.clearRect(0, 0, pick.width, pick.height);
  g.strokeStyle = '#ff0'; g.fillStyle = 'rgba(255,255,0,.15)'; g.lineWidth = 2;
  for(const p of polys){
    if(!p.length) continue;
    g.beginPath(); p.forEach(([x, y], i) => (i ? g.lineTo : g.moveTo).call(g, x*pick.width, y*pick.height));
    if(p.length >= 3){ g.closePath(); g.fill(); } g.stroke();
  }
}
document.getElementById('draw').onclick = () => { pick.style.display = 'block'; show(); };
document.getElementById('next').onclick = () => { if(polys[polys.length-1].length >= 3) polys.push([]); show(); };
document.getElementById('undo').onclick = () => { polys[polys.length-1].pop(); show(); };
document.getElementById('clear').onclick = () => { polys = [[]]; show(); };
pick.addEventListener('click', ev => {  // fractions of the picture: the config's unit, whatever its size
  const r = pick.getBoundingClientRect();
  const clamp = v => Math.min(1, Math.max(0, v));
  const x = clamp((ev.clientX - r.left) / r.width), y = clamp((ev.clientY - r.top) / r.height);
  polys[polys.length-1].push([+x.toFixed(3), +y.toFixed(3)]); show();
});
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


# A Pi serves a handful of viewers: more connections than this and the oldest one that has not finished its
# request headers is dropped to make room (a client that connects and says nothing cannot lock others out).
MAX_CONNECTIONS = 16
# Seconds a client may take to send its request, or to take a frame of the stream, before it is dropped.
CLIENT_TIMEOUT = 10.0
# Failed logins: one warning per this many seconds, with the count since the last one.
AUTH_LOG_INTERVAL = 60.0


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer with a bounded number of connections (so of threads), and quiet about clients
    that go away: a traceback per disconnect would let anyone flood the journal."""

    daemon_threads = True

    def __init__(self, address, handler, max_connections: int = MAX_CONNECTIONS):
        self.max_connections = max_connections
        self.conns: dict = {}  # socket -> [accepted monotonic time, still reading its request]
        self.conns_lock = threading.Lock()
        self.dropped_idle = 0
        self.refused = 0
        if ":" in address[0]:
            self.address_family = socket.AF_INET6  # an IPv6 literal such as "::1"
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        with self.conns_lock:
            if len(self.conns) >= self.max_connections:
                idle = [s for s, (t, reading) in self.conns.items() if reading]
                if not idle:  # every slot is a viewer being served: this one waits for a free slot elsewhere
                    self.refused += 1
                    self.shutdown_request(request, locked=True)
                    return
                oldest = min(idle, key=lambda s: self.conns[s][0])
                self.conns.pop(oldest)
                self.dropped_idle += 1
                try:
                    oldest.shutdown(socket.SHUT_RDWR)  # its handler's read fails and its thread ends
                except OSError:
                    pass
            self.conns[request] = [time.monotonic(), True]
        super().process_request(request, client_address)

    def request_read(self, request) -> None:
        with self.conns_lock:
            if request in self.conns:
                self.conns[request][1] = False

    def shutdown_request(self, request, locked: bool = False):
        if locked:
            self.conns.pop(request, None)
        else:
            with self.conns_lock:
                self.conns.pop(request, None)
        super().shutdown_request(request)

    def handle_error(self, request, client_address):
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, (OSError, ValueError)):  # reset, broken pipe, timeout, garbage on the wire
            log.debug("http view: client %s: %s", client_address[0], exc)
        else:
            log.warning("http view: client %s: %s: %s", client_address[0], type(exc).__name__, exc)


class _AuthLog:
    """Failed logins, logged at most once per AUTH_LOG_INTERVAL with how many there were."""

    def __init__(self):
        self.lock = threading.Lock()
        self.count = 0
        self.last = -AUTH_LOG_INTERVAL

    def failed(self, who: str) -> None:
        with self.lock:
            self.count += 1
            now = time.monotonic()
            if now - self.last < AUTH_LOG_INTERVAL:
                return
            n, self.count, self.last = self.count, 0, now
        log.warning("http view: %d failed login%s (latest from %s)", n, "" if n == 1 else "s", who)


class HttpViewSink(Sink):
    needs_image = True
    name = "http view"

    def __init__(self, cfg: DisplayConfig, masks=None):
        self.masks = masks  # drawn faintly on the stream
        self.cfg = cfg
        self.host, self.port = parse_hostport(cfg.http, "display.http")
        # From the file, else the systemd credential "http-password"; empty: no password.
        self.password = read_secret(cfg.http_password_file, "display.http_password_file", "http-password")
        self.shared = _Shared()
        self.server = None
        self._threads = []
        self._last_pending = 0.0

    def start(self):
        shared, password, auth_log = self.shared, self.password, _AuthLog()

        class Handler(BaseHTTPRequestHandler):
            server_version = "emotion-edge"
            sys_version = ""  # no Python version in Server:

            def version_string(self):  # the base class joins the two with a space: "emotion-edge "
                return self.server_version
            timeout = CLIENT_TIMEOUT  # per socket operation: a silent or stalled client is dropped

            def log_message(self, fmt, *args):
                log.debug("http %s: " + fmt, self.client_address[0], *args)

            def parse_request(self):
                ok = super().parse_request()
                if ok:
                    self.server.request_read(self.connection)
                return ok

            def end_headers(self):
                self.send_header("X-Content-Type-Options", "nosniff")
                super().end_headers()

            def _authorised(self) -> bool:
                if password is None:
                    return True
                scheme, _, value = self.headers.get("Authorization", "").strip().partition(" ")
                if scheme.lower() == "basic":  # RFC 7235: the scheme is case-insensitive
                    try:
                        _, _, given = base64.b64decode(value.strip(), validate=True).decode().partition(":")
                        if hmac.compare_digest(given.encode(), password.encode()):
                            return True
                    except (ValueError, UnicodeDecodeError):
                        pass
                auth_log.failed(self.client_address[0])
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
                except OSError:  # the viewer went away or stopped reading
                    pass
                finally:
                    with shared.cond:
                        shared.clients -= 1

        try:
            self.server = _Server((self.host, self.port), Handler)
        except (OSError, OverflowError) as e:
            raise OSError(f"display.http: cannot listen on {self.host}:{self.port}: "
                          f"{getattr(e, 'strerror', None) or e}") from None
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
            ok, jpg = cv2.imencode(".jpg", annotate_bgr(img, event, self.cfg.scores, self.masks),
                                   [cv2.IMWRITE_JPEG_QUALITY, 75])
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
