"""The live view of a control loop: a trial seen from the host (`bpd hil run --view [PORT]`, rows
from hil/ticklog.py's ViewedTickLog), the simulated rig seen from the device (`bpd rig sim --view`,
firmware_host/rig/sim_view.py), and the same page for a finished trial (`bpd hil report LOG_DIR
--html`, hil/report.py). Here because both rooms serve it: the base package is below them both.

The loop only appends each row, already formatted, to a buffer (`LiveView.add`); a local HTTP
server in a thread of its own (bound to 127.0.0.1) serves the page (view.html), the plotting
library shipped inside the `plotly` package (no CDN: the page works offline) and `/data?since=N`,
the rows after the N-th as JSON, which the page polls. The page plots the columns obs0.., action0..,
device_period_us and host_step_us (those present) and counts deadline_miss and skipped. The server keeps
the newest KEEP rows (the page's live window) and the counts of the rows before them: a trial of any
length holds the same memory, and a page opened late gets the window, not the whole trial, so that
encoding its answer never holds the loop's thread for long (the --html page has every row). At the end
the summary is handed over and the server stops as soon as a page has received it (at most `linger`
seconds later, on Ctrl-C STOP_GRACE seconds, so that a watching page says the trial was interrupted and
whether the stop was sent; at once when no page ever asked, on a second Ctrl-C, or when told to stop
waiting).
"""

from __future__ import annotations

import json
import sys
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import islice
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from bpd.errors import BpdError

DEFAULT_PORT = 8765
KEEP = 3000  # rows the server keeps and a page plots (view.html's window)
STOP_GRACE = 1.0  # on Ctrl-C: seconds a watching page has to receive the summary (four of its polls)
COUNTED = ("deadline_miss", "skipped")  # summed over the rows dropped from the window, for the page's totals
PAGE = Path(__file__).with_name("view.html")


def plotly_js() -> str:
    """plotly.min.js as the installed `plotly` package ships it."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


class LiveBuffer:
    """The newest `keep` rows of a running loop, appended by the loop and read by the server thread;
    `dropped` rows went before them, whose COUNTED columns are summed in `counts`."""

    def __init__(self, keep: int = KEEP) -> None:
        self.lock = threading.Lock()
        self.keep = keep
        self.columns: list[str] = []
        self.rows: deque[list] = deque()
        self.dropped = 0
        self.counts = dict.fromkeys(COUNTED, 0.0)
        self.count_at: dict[str, int] = {}  # where the COUNTED columns are in a row
        self.meta: dict = {}
        self.summary: dict | None = None
        self.polled = threading.Event()    # a page asked for data at least once
        self.released = threading.Event()  # a page received the summary, or the wait for one was called off

    def append(self, row: list) -> None:
        with self.lock:
            self.rows.append(row)
            if len(self.rows) > self.keep:
                old = self.rows.popleft()
                self.dropped += 1
                for k, i in self.count_at.items():
                    try:
                        self.counts[k] += float(old[i] or 0)
                    except (TypeError, ValueError):
                        pass

    def since(self, n: int) -> dict:
        """The rows from the n-th on, or from the oldest kept when the n-th was dropped (`start` says which;
        `before`: the rows before the kept ones, and their counts)."""
        with self.lock:
            start = min(max(n, self.dropped), self.dropped + len(self.rows))
            rows = list(islice(self.rows, start - self.dropped, None))
            before = {"rows": self.dropped, **self.counts}
            summary = self.summary
        return {"columns": self.columns, "meta": self.meta, "start": start, "rows": rows, "next": start + len(rows),
                "before": before, "keep": self.keep, "done": summary is not None, "summary": summary}


def _handler(buffer: LiveBuffer, page: bytes, js: bytes) -> type[BaseHTTPRequestHandler]:
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
                    buffer.released.set()
            elif url.path == "/favicon.ico":  # asked by every browser: no icon, and no failed request in its console
                self.send_response(204)
                self.end_headers()
            else:
                self.send_error(404)

        def _send(self, body: bytes, kind: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:  # the loop's terminal stays the loop's
            pass

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True     # a page still connected never holds up the end of the run
    request_queue_size = 128  # the listen backlog (socketserver's default is 5): a page opens several
                              # connections at once, and a busy host accepts them late

    def handle_error(self, request, client_address) -> None:
        """A page that went (closed, reloaded) before its answer was written is no fault: the loop's terminal gets no
        traceback for it. Any other error is socketserver's to print."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class LiveView:
    """The live page's server for as long as a `with` lasts; None port: no view (everything a no-op).
    Bound on entering, so that a busy port is refused before the loop starts."""

    def __init__(self, port: int | None, linger: float = 10.0) -> None:
        self.port = port
        self.linger = linger
        self.buffer = LiveBuffer()
        self.server: _Server | None = None
        self.thread: threading.Thread | None = None

    def __enter__(self) -> LiveView:
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
                                       name="bpd-live-view", daemon=True)
        self.thread.start()
        return self

    @property
    def serving(self) -> bool:
        return self.server is not None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, columns: list[str], meta: dict) -> None:
        """The rows' columns, and what the page's title and timing plot show (rig, period_us, mode, title)."""
        with self.buffer.lock:
            self.buffer.columns, self.buffer.meta = list(columns), dict(meta)
            self.buffer.count_at = {k: columns.index(k) for k in COUNTED if k in columns}

    def add(self, row: list) -> None:
        self.buffer.append(row)

    def finish(self, summary: dict) -> None:
        """The loop is over: its summary goes to the page."""
        with self.buffer.lock:
            self.buffer.summary = json.loads(json.dumps(summary, default=str))

    def stop_waiting(self) -> None:
        """No more waiting for a page to receive the summary (a second Ctrl-C): the `with` ends now."""
        self.buffer.released.set()

    def __exit__(self, exc_type, *exc) -> None:
        if self.server is None:
            return
        stopped = bool(exc_type and issubclass(exc_type, KeyboardInterrupt))
        try:
            if self.buffer.summary is not None and self.buffer.polled.is_set():
                try:  # a page is watching: let it get the summary (or the error, or how the trial was stopped)
                    self.buffer.released.wait(STOP_GRACE if stopped else self.linger)
                except KeyboardInterrupt:
                    if not stopped:
                        raise
                    # Ctrl-C again: leave now, with the first one's exception (its note says what became of the trial)
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


def view_flag(p) -> None:
    """--view alone serves on the default port; --view PORT on that one (a command's argument tweak)."""
    for a in p._actions:
        if a.dest == "view":
            a.nargs, a.const, a.metavar = "?", DEFAULT_PORT, "PORT"
