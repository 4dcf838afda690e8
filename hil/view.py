"""A live view of a trial (`bpd hil run --view [PORT]`) and the same page for a finished one
(`bpd hil report LOG_DIR --html`).

The trial loop only appends each tick log row, already formatted, to a buffer (`ViewedTickLog`); a
local HTTP server in a thread of its own (bound to 127.0.0.1) serves the page, the plotting library
shipped inside the `plotly` package (no CDN: the page works offline) and `/data?since=N`, the rows
after the N-th as JSON, which the page polls. At the trial's end the summary is handed over and the
server stops as soon as a page has received it (at most `linger` seconds later; at once when no
page ever asked). The --html file is the same page with the library and every row inlined.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from bpd.errors import BpdError
from bpd.io import read_json
from hil.ticklog import TickLog, read_ticks

DEFAULT_PORT = 8765
PAGE = Path(__file__).with_name("view.html")


def plotly_js() -> str:
    """plotly.min.js as the installed `plotly` package ships it."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


class TrialBuffer:
    """Rows of a running trial, appended by the trial loop and read by the server thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.columns: list[str] = []
        self.rows: list[list] = []
        self.meta: dict = {}
        self.summary: dict | None = None
        self.polled = threading.Event()     # a page asked for data at least once
        self.delivered = threading.Event()  # a page received the summary

    def append(self, row: list) -> None:
        with self.lock:
            self.rows.append(row)

    def since(self, n: int) -> dict:
        with self.lock:
            rows = self.rows[n:]
            summary = self.summary
        return {"columns": self.columns, "meta": self.meta, "start": n, "rows": rows, "next": n + len(rows),
                "done": summary is not None, "summary": summary}


class ViewedTickLog(TickLog):
    """ticks.csv as TickLog writes it, each row also handed to the view's buffer (a list append)."""

    def __init__(self, path: Path, obs_dim: int, act_dim: int, buffer: TrialBuffer, meta: dict) -> None:
        super().__init__(path, obs_dim, act_dim)
        self.buffer = buffer
        with buffer.lock:
            buffer.columns = [n for n, _ in self.cols]
            buffer.meta = meta

    def add(self, row: list) -> None:
        super().add(row)
        self.buffer.append(row)


def _handler(buffer: TrialBuffer, page: bytes, js: bytes) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            url = urlparse(self.path)
            if url.path in ("/", "/index.html"):
                self._send(page, "text/html; charset=utf-8")
            elif url.path == "/plotly.min.js":
                self._send(js, "application/javascript")
            elif url.path == "/data":
                try:
                    since = max(0, int(parse_qs(url.query).get("since", ["0"])[0]))
                except ValueError:
                    since = 0
                buffer.polled.set()
                data = buffer.since(since)
                self._send(json.dumps(data).encode(), "application/json")
                if data["done"]:
                    buffer.delivered.set()
            else:
                self.send_error(404)

        def _send(self, body: bytes, kind: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:  # the trial's terminal stays the trial's
            pass

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True     # a page still connected never holds up the end of the run
    request_queue_size = 128  # the listen backlog (socketserver's default is 5): a page opens several
                              # connections at once, and a busy host accepts them late


class TrialView:
    """The live page's server for as long as a `with` lasts; None port: no view (everything a no-op)."""

    def __init__(self, port: int | None, linger: float = 10.0) -> None:
        self.port = port
        self.linger = linger
        self.buffer = TrialBuffer()
        self.server: _Server | None = None
        self.thread: threading.Thread | None = None

    def __enter__(self) -> TrialView:
        if self.port is None:
            return self
        if not 0 <= self.port <= 65535:
            raise BpdError(f"--view {self.port}: not a TCP port (0-65535)")
        try:
            self.server = _Server(("127.0.0.1", self.port),
                                  _handler(self.buffer, page_html(live=True), plotly_js().encode()))
        except OSError as e:
            raise BpdError(f"--view {self.port}: cannot serve on 127.0.0.1:{self.port} ({e.strerror or e}); "
                           "choose another port with --view PORT") from None
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                       name="bpd-trial-view", daemon=True)
        self.thread.start()
        print(f"live view: http://127.0.0.1:{self.port}/", flush=True)
        return self

    def tick_log(self, path: Path, obs_dim: int, act_dim: int, meta: dict) -> TickLog:
        """The trial's tick log, feeding this view when it serves."""
        if self.server is None:
            return TickLog(path, obs_dim, act_dim)
        return ViewedTickLog(path, obs_dim, act_dim, self.buffer, meta)

    def finish(self, summary: dict) -> None:
        """The trial is over: its summary goes to the page."""
        with self.buffer.lock:
            self.buffer.summary = json.loads(json.dumps(summary, default=str))

    def __exit__(self, exc_type, *exc) -> None:
        if self.server is None:
            return
        try:
            if exc_type is not KeyboardInterrupt and self.buffer.summary is not None and self.buffer.polled.is_set():
                self.buffer.delivered.wait(self.linger)  # a page is watching: let it get the summary (or the error)
        finally:
            self.server.shutdown()
            self.server.server_close()


def page_html(live: bool, data: dict | None = None) -> bytes:
    """The page: live, it loads /plotly.min.js and polls /data; otherwise the library and `data` are
    inlined (one file that opens offline)."""
    html = PAGE.read_text()
    if live:
        lib = '<script src="/plotly.min.js"></script>'
        init = "<script>window.BPD_STATIC = null;</script>"
    else:
        lib = "<script>" + plotly_js() + "</script>"
        init = "<script>window.BPD_STATIC = " + json.dumps(data).replace("</", "<\\/") + ";</script>"
    return html.replace("<!--PLOTLY-->", lib).replace("<!--DATA-->", init).encode()


def write_html(log_dir: str | Path) -> Path:
    """LOG_DIR/trial.html: the view of a finished trial in one self-contained file."""
    d = Path(log_dir)
    if not (d / "summary.json").is_file():
        raise BpdError(f"{d}: no summary.json; --html reads a finished trial")
    rows = read_ticks(d / "ticks.csv")
    if not rows:
        raise BpdError(f"{d}: no ticks.csv with rows")
    summary = read_json(d / "summary.json", "trial summary")
    if not isinstance(summary, dict):
        raise BpdError(f"{d / 'summary.json'}: corrupt trial summary (not a JSON object)")
    columns = list(rows[0])
    data = {"columns": columns, "meta": {"rig": summary.get("rig"), "period_us": summary.get("target_period_us"),
                                         "mode": (summary.get("config") or {}).get("mode")},
            "start": 0, "rows": [[r[c] for c in columns] for r in rows], "next": len(rows), "done": True,
            "summary": summary}
    out = d / "trial.html"
    out.write_bytes(page_html(live=False, data=data))
    return out
