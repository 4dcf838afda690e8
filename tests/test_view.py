"""The live view in a real browser, headless Chromium: of a simulated trial from the host (`bpd hil run
--view`) and of the simulated rig from the device (`bpd rig sim --view`), rows arriving while it runs,
every row and the summary at the end, the server stopping by itself; the --html page of a finished
trial is one self-contained file holding every row; a busy port is one line."""

import json
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest

from hil.ticklog import read_ticks
from tests.conftest import BPD, run_bpd
from tests.test_rig_pty import FIX, Rig

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make system-deps "
                                    "installs Debian's chromium): the browser test of the live view is skipped")


PENDULUM_LABELS = {"obs0": "position, m", "obs1": "angle, rad", "obs2": "position rate, m/s",
                   "obs3": "angle rate, rad/s", "action0": "action, motor command (gear 100: N / 100)"}


def patient_rig(tmp_path: Path) -> str:
    """gym-inverted-pendulum with a 1 s watchdog (25 ticks, the rig's own 5): Chromium and the suite's workers may
    keep the host from a device-mode trial for longer than 0.2 s on a loaded machine, and the view, not the watchdog
    (tests/test_conformance.py), is what these tests check."""
    rigs = Path(__file__).resolve().parent.parent / "firmware_host" / "rig" / "rigs"
    text = (rigs / "gym-inverted-pendulum.yaml").read_text()
    assert "watchdog_ticks: 5\n" in text
    p = tmp_path / "gym-inverted-pendulum.yaml"
    p.write_text(text.replace("watchdog_ticks: 5\n", "watchdog_ticks: 25\n"))
    return str(p)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def browse(url: str, out: Path, screenshot: Path | None = None, budget_ms: int = 3000) -> str:
    """The DOM of `url` after headless Chromium ran its scripts for `budget_ms` of virtual time."""
    args = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
            f"--user-data-dir={out / 'chromium-profile'}", f"--virtual-time-budget={budget_ms}",
            "--window-size=1200,1400", "--dump-dom", url]
    if screenshot is not None:
        args.insert(-2, f"--screenshot={screenshot}")
    p = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=out)
    if "</html>" not in p.stdout:  # no page: Chromium's last line says why
        return "chromium: " + (p.stderr.strip().splitlines() or ["no output"])[-1]
    return p.stdout


def shown(dom: str) -> dict:
    """What the page shows: its state, tick count and whether the summary is there."""
    get = lambda i: (re.search(rf'id="{i}">([^<]*)<', dom) or [None, None])[1]
    ticks = get("ticks")
    return {"state": get("state"), "ticks": int(ticks) if ticks else None, "done": 'data-done="1"' in dom}


def rows_served(port: int) -> int:
    """How many tick rows the live view holds, asked as the page asks. Only while the trial runs: a reply
    that carries the summary lets the server stop."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/data?since=0", timeout=10) as r:
        return json.load(r)["next"]


def wait_for_rows(port: int, proc: subprocess.Popen) -> None:
    """Until the view holds a row (the simulated rig takes seconds to start on a busy machine)."""
    deadline = time.monotonic() + 60
    while rows_served(port) == 0:
        assert proc.poll() is None and time.monotonic() < deadline, "no tick row within 60 s"
        time.sleep(0.1)


def page_while_running(url: str, out: Path) -> dict:
    """What the page shows while the loop runs. A virtual-time budget of one poll interval: the page
    loads and polls twice (all rows, then the rows since), two redraws, some 15 s on a machine loaded
    5-fold, within the trials' 32 s. With 3 s it polled twelve times; one load outlasted the trial, had
    the summary, and the server, having served it, had stopped for the next loads."""
    failed = []
    while len(failed) < 3:
        dom = browse(url, out, budget_ms=250)
        s = shown(dom)
        if s["state"] is not None:
            return s
        failed.append(dom[:300])  # a load Chromium did not finish on a busy machine: tried again
    raise AssertionError(failed)


def finished_page(url: str, out: Path) -> str:
    """The page's DOM once the loop is over. No screenshot of a live page: taken after the page drew its
    WebGL plots, on a loaded machine it hung Chromium now and then (9 of some 60 loads; none of some 45
    without), and this load is the one that has the summary, after which the server is gone. The
    --html test keeps one."""
    dom = browse(url, out)
    assert dom.count('class="plot js-plotly-plot"') == 4, dom[:300]  # the four plots drawn
    return dom


@needs_chromium
def test_live_view_in_chromium(tmp_path):
    port = free_port()
    out = tmp_path / "log"
    proc = subprocess.Popen([BPD, "hil", "run", "--port", "sim", "--rig", patient_rig(tmp_path), "--policy",
                             str(FIX), "--mode", "device", "--steps", "400", "--episodes", "2", "--no-plots",
                             "--out", str(out), "--view", str(port), "--view-linger", "60",
                             "--stall-timeout", "10"],  # a loaded machine may starve the rig for a second
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ended = lambda: json.loads((out / "summary.json").read_text())["ended"] if (out / "summary.json").exists() else None
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == f"live view: http://127.0.0.1:{port}/"  # printed once bound
        url = f"http://127.0.0.1:{port}/"
        wait_for_rows(port, proc)
        with urllib.request.urlopen(f"{url}data?since=0", timeout=10) as r:  # the rig's names and units, served
            assert json.load(r)["meta"]["labels"] == PENDULUM_LABELS
        mid = page_while_running(url, tmp_path)
        assert mid["state"] == "running" and 0 < mid["ticks"] < 800, (mid, "the trial ended during the load", ended())
        deadline = time.monotonic() + 90
        while not (out / "summary.json").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, "the view stopped before a page had the summary"
        dom = finished_page(url, tmp_path)
        assert shown(dom) == {"state": "finished", "ticks": 800, "done": True}, dom[:300]  # every row, the summary
        rc = proc.wait(timeout=30)  # stops by itself once a page had the summary (not after the 60 s linger)
        assert rc == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)
    s = json.loads((out / "summary.json").read_text())
    assert s["ended"] == "complete" and s["timing"]["ticks"] == 800


@needs_chromium
def test_rig_sim_view_in_chromium(tmp_path):
    """`bpd rig sim --view`: the same page from the device's side, while a trial drives the rig and
    once the rig is stopped; every STATE the device sent is a row."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    patient = patient_rig(tmp_path)
    rig = Rig(tmp_path, "--rig", patient, "--policy", str(FIX), "--view", str(port),
              "--view-linger", "60")  # the view is bound before the rig prints its port
    trial = subprocess.Popen([BPD, "hil", "run", "--port", rig.path, "--rig", patient, "--policy",
                              str(FIX), "--mode", "device", "--steps", "400", "--episodes", "2", "--no-plots",
                              "--out", str(tmp_path / "log"), "--stall-timeout", "10"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_rows(port, trial)
        mid = page_while_running(url, tmp_path)
        assert mid["state"] == "running" and 0 < mid["ticks"] < 800, mid
        _, err = trial.communicate(timeout=180)
        assert trial.returncode == 0, err
        sent = rows_served(port)  # the trial's 800 states, and any that left the device before its STOP came
        assert sent >= 800
        rig.proc.terminate()  # the rig stops: the summary goes to the page
        dom = finished_page(url, tmp_path)
        assert shown(dom) == {"state": "ended (stopped (SIGTERM))", "ticks": sent, "done": True}, dom[:300]
        assert "summary: stopped (SIGTERM)" in dom and dom.count("stopped by the host") == 2, dom[:300]
        assert rig.proc.wait(30) == 0  # gone once the page had the summary, not after the 60 s linger
    finally:
        if trial.poll() is None:
            trial.kill()
            trial.wait(10)
        rig.close()


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.refs += [f"{tag} {k}={v}" for k, v in attrs if k in ("src", "href", "data", "srcset")]
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts.append(data)


def test_report_html_is_self_contained(tmp_path):
    out = tmp_path / "log"
    run_bpd("hil", "run", "--port", "sim", "--rig", "gym-inverted-pendulum", "--policy", str(FIX), "--lockstep",
            "--mode", "device", "--steps", "40", "--episodes", "2", "--no-plots", "--out", str(out), timeout=120)
    printed = run_bpd("hil", "report", str(out), "--html").stdout.splitlines()
    page = out / "trial.html"
    assert printed[-1] == str(page)
    p = _Refs()
    p.feed(page.read_text())
    assert p.refs == []  # no external src/href: the page opens offline
    assert any("Plotly" in s and len(s) > 1_000_000 for s in p.scripts)  # the library itself, inlined
    data = next(s for s in p.scripts if "window.BPD_STATIC" in s)
    data = json.loads(data.split("=", 1)[1].strip().rstrip(";"))
    rows = read_ticks(out / "ticks.csv")
    assert len(data["rows"]) == len(rows) == 80
    assert [dict(zip(data["columns"], r)) for r in data["rows"]] == rows  # the trial's rows, as logged
    assert data["done"] and data["summary"]["ended"] == "complete"
    assert data["meta"]["labels"] == PENDULUM_LABELS
    if CHROMIUM:  # and a browser shows it from the file alone
        dom = browse(page.as_uri(), tmp_path, screenshot=tmp_path / "report.png")
        assert shown(dom) == {"state": "finished", "ticks": 80, "done": True}
        title = "bpd trial: gym-inverted-pendulum (device mode, simulated rig)"  # the page and its tab say where
        assert f'<h2 id="title">{title}</h2>' in dom and f"<title>{title}</title>" in dom
        assert "obs1: angle, rad" in dom and "action0: action, motor command (gear 100: N / 100)" in dom  # legends
        assert "m; rad; m/s; rad/s" in dom  # the state plot's axis: its units
        assert "inference median (ns)" in browse(page.as_uri(), tmp_path)
        summary = json.loads((out / "summary.json").read_text())  # the same log as a PIL trial's: under QEMU the
        summary["config"]["port"] = "pil"  # inference figure counts instructions (docs/protocol.md rule 16)
        (out / "summary.json").write_text(json.dumps(summary))
        run_bpd("hil", "report", str(out), "--html")
        dom = browse(page.as_uri(), tmp_path)
        assert "inference median (instructions, QEMU)" in dom
        assert '<h2 id="title">bpd trial: gym-inverted-pendulum (device mode, QEMU)</h2>' in dom


@pytest.mark.parametrize("command", [["hil", "run", "--port", "sim", "--policy", str(FIX), "--out"],
                                     ["rig", "sim", "--build-dir"]], ids=["hil-run", "rig-sim"])
def test_busy_port_is_one_line(tmp_path, command):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        p = run_bpd(*command, str(tmp_path / "out"), "--rig", "gym-inverted-pendulum", "--view", str(port),
                    check=False, timeout=60)
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and f"--view {port}: cannot serve on 127.0.0.1:{port}" in lines[0], p.stderr
    assert not (tmp_path / "out").exists()  # refused before any rig started or log was written


@pytest.mark.parametrize("base", [["hil", "run", "--port", "sim", "--rig", "r", "--policy", "p"], ["rig", "sim"]],
                         ids=["hil-run", "rig-sim"])
def test_view_flag_default_port(base):
    from bpd.view import DEFAULT_PORT
    from bpd_app.parser import build_parser, room_commands

    parse = lambda *a: build_parser(room_commands(), [*base, *a]).parse_args([*base, *a])
    assert parse().view is None
    assert parse("--view").view == DEFAULT_PORT
    assert parse("--view", "9001").view == 9001


def test_ctrl_c_with_a_page_watching_stops_at_once_and_zeroes_the_rig(tmp_path):
    rig = Rig(tmp_path, "--rig", "gym-inverted-pendulum", "--period-us", "20000")
    try:
        port = free_port()
        out = tmp_path / "log"
        proc = subprocess.Popen([BPD, "hil", "run", "--port", rig.path, "--rig", "gym-inverted-pendulum",
                                 "--policy", str(FIX), "--out", str(out), "--period-us", "20000", "--episodes", "5",
                                 "--no-plots", "--view", str(port), "--view-linger", "60"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None and proc.stdout.readline().startswith("live view:")
            got = 0
            deadline = time.monotonic() + 30
            while got < 20 and time.monotonic() < deadline:  # a page polling: rows arrive
                got = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/data?since=0", timeout=5))["next"]
                time.sleep(0.2)
            assert got >= 20
            proc.send_signal(signal.SIGINT)
            t0 = time.monotonic()
            _, err = proc.communicate(timeout=20)
            assert proc.returncode == 130 and "interrupted" in err
            assert time.monotonic() - t0 < 10  # not the 60 s linger: Ctrl-C stops the view at once
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        assert json.loads((out / "summary.json").read_text())["ended"].startswith("interrupted")
        with pytest.raises(ConnectionRefusedError):  # the server is gone
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        from hil.link import DeviceLink

        link = DeviceLink(rig.path)  # the device was told to stop: a new session finds it idle
        try:
            link.handshake()
            link.configure(20000, 5, "host", 3.0, 1.0, 0.2)  # rejected if the device were still running
        finally:
            link.close()
    finally:
        rig.close()


def test_live_buffer_keeps_the_window_and_the_counts_before_it():
    """A trial of any length: the server holds the newest `keep` rows, and a page opened late gets them with the
    totals of the rows dropped before them, not the whole trial in one answer (encoded on the loop's interpreter)."""
    from bpd.view import LiveView

    view = LiveView(None)
    view.buffer.keep = 5
    view.start(["episode", "deadline_miss", "skipped", "obs0"], {})
    for i in range(12):
        view.add([0, int(i % 3 == 0), int(i % 4 == 0), i])  # misses at 0, 3, 6, 9; skipped at 0, 4, 8
    b = view.buffer
    assert len(b.rows) == 5 and b.dropped == 7
    late = b.since(0)
    assert (late["start"], late["next"], [r[3] for r in late["rows"]]) == (7, 12, [7, 8, 9, 10, 11])
    assert late["before"] == {"rows": 7, "deadline_miss": 3.0, "skipped": 2.0}  # rows 0-6
    assert [r[3] for r in b.since(10)["rows"]] == [10, 11] and b.since(10)["start"] == 10
    assert b.since(99)["rows"] == [] and b.since(99)["next"] == 12


@needs_chromium
def test_page_opened_late_counts_every_tick(tmp_path):
    """A page opened after the server dropped rows: its tick count and deadline misses are the trial's, its plots
    the newest rows."""
    from bpd.view import LiveView

    with LiveView(free_port(), linger=30) as view:
        view.buffer.keep = 50
        view.start(["episode", "deadline_miss", "skipped", "obs0", "action0"], {"rig": "r", "period_us": 1000})
        for i in range(400):
            view.add([i // 200, int(i % 10 == 0), 0, 0.01 * i, 0.0])
        view.finish({"ended": "complete", "episodes": [], "timing": {"ticks": 400}})
        dom = browse(view.url, tmp_path)
    assert shown(dom) == {"state": "finished", "ticks": 400, "done": True}
    assert re.search(r'id="misses">40<', dom)


def test_ctrl_c_summary_reaches_a_watching_page():
    """Ctrl-C with a page polling as view.html does (every 250 ms): the page gets the summary saying the trial was
    interrupted and the stop sent before the server goes, within a second, not after the linger."""
    import threading

    from bpd.view import LiveView

    got: dict = {}

    def page(url: str) -> None:
        n = 0
        while True:
            try:
                with urllib.request.urlopen(f"{url}data?since={n}", timeout=5) as r:
                    data = json.load(r)
            except OSError:
                got["error"] = "no connection to the trial"
                return
            n = data["next"]
            if data["done"]:
                got["summary"] = data["summary"]
                return
            time.sleep(0.25)

    with pytest.raises(KeyboardInterrupt):
        with LiveView(free_port(), linger=60) as view:
            view.start(["episode", "deadline_miss", "skipped", "obs0", "action0"], {})
            view.add([0, 0, 0, 0.1, 0.0])
            watcher = threading.Thread(target=page, args=(view.url,))
            watcher.start()
            while not view.buffer.polled.is_set():
                time.sleep(0.01)
            time.sleep(0.1)  # between two of the page's polls
            view.finish({"ended": "interrupted (Ctrl-C): stop sent", "episodes": []})
            t0 = time.monotonic()
            raise KeyboardInterrupt
    assert time.monotonic() - t0 < 5
    watcher.join(10)
    assert got == {"summary": {"ended": "interrupted (Ctrl-C): stop sent", "episodes": []}}


def test_column_labels_name_the_rigs_units():
    from bpd.view import LiveView
    from firmware_host.rig import load_rig
    from firmware_host.rig.sim_view import SimWatch, column_labels

    assert column_labels(load_rig("gym-inverted-pendulum")) == PENDULUM_LABELS
    assert column_labels(load_rig("rotary-pendulum")) == {  # the YAML's comma inside the unit is the unit's
        "obs0": "position, rad (arm)", "obs1": "angle, rad (pendulum, 0 upright)", "obs2": "position rate, rad/s",
        "obs3": "angle rate, rad/s", "action0": "action, V"}
    view = LiveView(None)
    SimWatch(load_rig("gym-inverted-pendulum"), view)  # bpd rig sim --view serves them too
    assert view.buffer.meta["labels"] == PENDULUM_LABELS


def test_favicon_is_no_content():
    """Every browser asks for /favicon.ico: answered with no content, not a 404 in the page's console."""
    from bpd.view import LiveView

    with LiveView(free_port()) as view:
        with urllib.request.urlopen(view.url + "favicon.ico", timeout=10) as r:
            assert (r.status, r.read()) == (204, b"")


@needs_chromium
def test_page_before_the_first_tick_says_it_waits(tmp_path):
    """Opened while the rig starts (columns known, no row yet): the page says it waits, not that the trial runs."""
    from bpd.view import LiveView

    with LiveView(free_port()) as view:
        view.start(["episode", "deadline_miss", "skipped", "obs0", "action0"], {"rig": "r", "period_us": 1000})
        dom = browse(view.url, tmp_path, budget_ms=500)
        view.stop_waiting()
    assert shown(dom) == {"state": "waiting for the first tick", "ticks": 0, "done": False}, dom[:300]


@needs_chromium
def test_page_outlives_a_failed_poll(tmp_path):
    """One poll answered with an error (a busy host, a dropped connection) does not end the page's updates: it asks
    again and shows every row and the summary (it used to stop at 'no connection to the trial')."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from bpd.view import LiveBuffer, page_html, plotly_js

    buf = LiveBuffer()
    buf.columns, buf.meta = ["episode", "deadline_miss", "skipped", "obs0", "action0"], {"rig": "r"}
    for i in range(30):
        buf.append([0, 0, 0, 0.1 * i, 0.0])
    page, js, asked = page_html(live=True), plotly_js().encode(), []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path.startswith("/data"):
                asked.append(self.path)
                if len(asked) == 2:  # the second poll fails; the rows after it and the summary come later
                    self.send_error(503)
                    return
                if len(asked) == 3:
                    for i in range(30, 50):
                        buf.append([0, 0, 0, 0.1 * i, 0.0])
                    buf.summary = {"ended": "complete", "episodes": [], "timing": {"ticks": 50}}
                body = json.dumps(buf.since(int(self.path.partition("since=")[2] or 0))).encode()
            else:
                body = js if self.path == "/plotly.min.js" else page
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        dom = browse(f"http://127.0.0.1:{server.server_address[1]}/", tmp_path, budget_ms=5000)
    finally:
        server.shutdown()
        server.server_close()
    assert len(asked) >= 3, asked
    assert shown(dom) == {"state": "finished", "ticks": 50, "done": True}, dom[:300]


def test_a_page_gone_before_its_answer_prints_no_traceback(capfd):
    """A page closed while its answer is written (the trial's host stopped, a tab closed, a reload) left a
    BrokenPipeError traceback in the middle of the trial's terminal; it is no fault, and nothing is printed."""
    import struct

    from bpd.view import LiveView

    with LiveView(free_port()) as view:
        for _ in range(5):
            s = socket.create_connection(("127.0.0.1", view.port))
            s.sendall(b"GET /plotly.min.js HTTP/1.1\r\nHost: x\r\n\r\n")  # 4 MB: still being written when it goes
            s.recv(100)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # closed with a reset
            s.close()
        time.sleep(0.5)
        with urllib.request.urlopen(view.url + "favicon.ico", timeout=10) as r:  # and the server still answers
            assert r.status == 204
    assert "Traceback" not in capfd.readouterr().err


def test_the_page_has_the_summary_before_the_plots_are_drawn(monkeypatch, tmp_path):
    """The trial's PNG plots take seconds after its last tick (more on a loaded machine; a second Ctrl-C may cut
    them): the page kept saying 'running' all that time, and never had the summary when they were interrupted. The
    summary is the page's once it is written, before the plots."""
    import hil.report
    from hil.trial import HilRunConfig, run_trial

    port, seen = free_port(), []

    def render(out):  # the plots being drawn: what a page polling now is told
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/data?since=0", timeout=10) as r:
            data = json.load(r)
        seen.append((data["done"], (data["summary"] or {}).get("ended"), data["next"]))
        raise KeyboardInterrupt  # a second Ctrl-C during the plots

    monkeypatch.setattr(hil.report, "render", render)
    cfg = HilRunConfig(port="sim", rig=patient_rig(tmp_path), policy=str(FIX), mode="device", steps=20,
                       out=str(tmp_path / "log"), view=port, view_linger=1, stall_timeout=10)
    with pytest.raises(KeyboardInterrupt):
        run_trial(cfg)
    assert seen == [(True, "complete", 20)]


@needs_chromium
def test_a_page_whose_poll_goes_unanswered_says_so(monkeypatch, tmp_path):
    """The trial's host stopped (its server is a thread of the loop's process): the page's poll is neither answered
    nor refused, and the page said 'running' for as long, while the device's watchdog had stopped the rig. After
    3 s without an answer it says so. (The unanswered poll is one that never settles: a browser's virtual time
    stands still while a request is pending.)"""
    import bpd.view
    from bpd.view import LiveView

    page = bpd.view.page_html
    hang = (b"<head><script>const realFetch = window.fetch; let calls = 0;\n"
            b"window.fetch = (...a) => (++calls <= 2 ? realFetch(...a) : new Promise(() => {}));</script>")
    monkeypatch.setattr(bpd.view, "page_html", lambda live, data=None: page(live, data).replace(b"<head>", hang, 1))
    with LiveView(free_port()) as view:
        view.start(["episode", "deadline_miss", "skipped", "obs0", "action0"], {"rig": "r", "period_us": 1000})
        view.add([0, 0, 0, 0.1, 0.0])
        dom = browse(view.url, tmp_path, budget_ms=6000)
        view.stop_waiting()
    s = shown(dom)
    assert s["ticks"] == 1 and re.fullmatch(r"no answer from the trial for [3-6] s \(its host stopped or busy\)",
                                            s["state"]), dom[:300]


@needs_chromium
def test_a_trial_cut_short_is_not_called_finished(tmp_path):
    """A trial the device's watchdog ended (or Ctrl-C, or an error) had its page say 'finished', as a complete one; the
    page's state now says how it ended."""
    from bpd.view import LiveView

    ended = "error: device fault: watchdog (episode 0, tick 3; the device zeroed its actuator); stop sent"
    with LiveView(free_port(), linger=30) as view:
        view.start(["episode", "deadline_miss", "skipped", "obs0", "action0"], {"rig": "r", "period_us": 1000})
        for i in range(3):
            view.add([0, 0, 0, 0.01 * i, 0.0])
        view.finish({"ended": ended, "episodes": [], "timing": {"ticks": 3}})
        dom = browse(view.url, tmp_path)
    assert shown(dom) == {"state": f"ended ({ended})", "ticks": 3, "done": True}, dom[:300]
