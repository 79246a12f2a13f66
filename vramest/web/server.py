"""The HTTP server behind `vramest web`: the standard library's ThreadingHTTPServer.

Routes (nothing else is served; no request path ever names a file on disk):
  GET  /, /app.js, /style.css     the page, from this package's data (read once at start)
  GET  /api/estimate?QUERY        exactly what `vramest estimate QUERY-as-flags --json` prints
  GET  /api/view?QUERY            that JSON with the figures formatted, the CLI's text and
                                  command line
  GET  /api/chart?QUERY           the memory-vs-context chart with the GPU lines (SVG)
  GET  /api/models?q=WORDS        the catalog for the picker
  GET  /api/gpus                  the hardware database for the GPU picker
  GET  /api/choices               the precisions, engines and attention kinds accepted
  POST /api/upload                dropped model files (vramest.web.uploads)
Bad input answers 400 with the CLI's sentence as {"error": …}.
"""

from __future__ import annotations

import ipaddress
import json
import signal
import sys
import threading
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qsl, urlsplit

from vramest.errors import InputError
from vramest.frozen import TYPE_CHECKING
from vramest.web import answers
from vramest.web.uploads import MAX_UPLOAD_BYTES, Uploads

if TYPE_CHECKING:
    from typing import Any

_STATIC = {"/": ("index.html", "text/html; charset=utf-8"),
           "/app.js": ("app.js", "text/javascript; charset=utf-8"),
           "/style.css": ("style.css", "text/css; charset=utf-8")}
# The page loads only itself: no CDN, fonts or scripts from elsewhere. The chart's SVG carries
# style attributes, hence 'unsafe-inline' for styles (never for scripts).
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'")


def load_static() -> dict[str, tuple[bytes, str]]:
    folder = resources.files("vramest.web") / "static"
    return {route: ((folder / name).read_bytes(), kind) for route, (name, kind) in _STATIC.items()}


class WebServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, port: int, *, quiet: bool = False) -> None:
        self.static = load_static()
        self.uploads = Uploads()  # before binding: a failed bind calls server_close
        self.quiet = quiet
        super().__init__((host, port), _Handler)
        self.allowed_hosts = _allowed_hosts(host, self.server_address[1])

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else host
        return f"http://{name if ':' not in name else f'[{name}]'}:{port}/"

    def server_close(self) -> None:
        super().server_close()
        self.uploads.close()


def _allowed_hosts(host: str, port: int) -> set[str] | None:
    """On a loopback address only these Host headers are served, so a web site cannot reach
    the server by pointing its own name at 127.0.0.1 (DNS rebinding); elsewhere any."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        return None
    return {f"{name}:{port}" for name in ("127.0.0.1", "localhost", "[::1]")}


class _Handler(BaseHTTPRequestHandler):
    server: WebServer
    protocol_version = "HTTP/1.1"
    timeout = 30  # seconds a connection may stall (a slow or truncated upload)
    server_version = "vramest"
    # Headers and body go out as two writes; with Nagle's algorithm the body would wait for
    # the client's delayed ACK (40 ms on Linux) on a kept-alive connection.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._answer(self._get)

    def do_POST(self) -> None:
        self._answer(self._post)

    def _answer(self, route: Any) -> None:
        try:
            if not self._same_site():
                self._json(HTTPStatus.FORBIDDEN, {"error": "This server answers only its own "
                                                  "page, at 127.0.0.1 or localhost."})
                return
            route()
        except InputError as exc:
            self._json(HTTPStatus.BAD_REQUEST, {"error": self.server.uploads.redact(str(exc))})
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception:
            traceback.print_exc(file=sys.stderr)
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR,
                       {"error": "vramest failed on this input (a bug: the server's log has "
                                 "the details)."})

    def _same_site(self) -> bool:
        """On loopback: addressed by a loopback name, and not sent by another site's page
        (browsers name the page's origin on uploads and on scripts' requests)."""
        hosts = self.server.allowed_hosts
        if hosts is None:
            return True
        origin = self.headers.get("Origin")
        return self.headers.get("Host") in hosts and (
            origin is None or origin.removeprefix("http://") in hosts)

    def _get(self) -> None:
        parts = urlsplit(self.path)
        if parts.path in self.server.static:
            body, kind = self.server.static[parts.path]
            self._send(HTTPStatus.OK, body, kind)
        elif parts.path == "/api/estimate":
            query = answers.parse_query(parts.query, self.server.uploads.resolve)
            _, result = answers.run_estimate(query)
            self._send(HTTPStatus.OK, answers.cli_json(result).encode(), "application/json")
        elif parts.path == "/api/view":
            query = answers.parse_query(parts.query, self.server.uploads.resolve)
            _, result = answers.run_estimate(query)
            self._json(HTTPStatus.OK, answers.view(query, result))
        elif parts.path == "/api/chart":
            query = answers.parse_query(parts.query, self.server.uploads.resolve)
            self._json(HTTPStatus.OK, {"svg": answers.chart(query)})
        elif parts.path == "/api/models":
            self._json(HTTPStatus.OK, answers.models(_only(parts.query, "q")))
        elif parts.path in ("/api/gpus", "/api/choices"):
            _only(parts.query)
            self._json(HTTPStatus.OK, answers.gpus() if parts.path == "/api/gpus" else
                       answers.choices())
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"Nothing here at {parts.path[:100]}; "
                                              "the page is at /."})

    def _post(self) -> None:
        if urlsplit(self.path).path != "/api/upload":
            self._json(HTTPStatus.NOT_FOUND, {"error": "Only /api/upload takes a POST."})
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            length = -1
        if not 0 < length <= MAX_UPLOAD_BYTES:
            self.close_connection = True  # the body, if any, is left unread
            self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE if length > 0 else
                       HTTPStatus.LENGTH_REQUIRED,
                       {"error": f"An upload is 1 byte to {MAX_UPLOAD_BYTES // 1024**2} MiB "
                                 "with its Content-Length given; the page sends only headers "
                                 "of weight files."})
            return
        body = self.rfile.read(length)
        if len(body) != length:
            raise InputError("The upload ended before its Content-Length.")
        upload = self.server.uploads.add(body)
        self._json(HTTPStatus.OK, {"model": answers.UPLOAD_PREFIX + upload.token,
                                   "name": upload.name})

    def _json(self, status: HTTPStatus, value: Any) -> None:
        self._send(status, json.dumps(value).encode(), "application/json")

    def _send(self, status: HTTPStatus, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Content-Security-Policy", _CSP)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        if not self.server.quiet:
            super().log_message(format, *args)


def _only(query: str, *accepted: str) -> str:
    """The value of the one parameter a route takes ('' when absent), refusing any other."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, max_num_fields=len(accepted) + 1)
    except ValueError:
        pairs = [("", "")] * (len(accepted) + 2)
    names = [name for name, _ in pairs]
    if any(name not in accepted for name in names) or len(set(names)) != len(names):
        takes = f"only {', '.join(accepted)}, once" if accepted else "no parameters"
        raise InputError(f"This address takes {takes}.")
    return pairs[0][1] if pairs else ""


def _stop(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def serve(host: str, port: int, *, open_browser: bool = False) -> None:
    """Serve until interrupted, printing the address (and opening it with --open)."""
    try:
        server = WebServer(host, port)
    except OSError as exc:
        raise InputError(f"Cannot listen on {host}:{port} ({exc.strerror or exc}); give another "
                         "--port, or --port 0 for any free one.") from None
    print(f"vramest web: serving {server.url} (Ctrl-C stops it)", flush=True)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)  # a plain `kill` also removes the uploads
    if open_browser:
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.serve_forever()
    finally:
        server.server_close()
