"""tests/bpd_zygote.py: a command run there ends as a fresh `bpd` process would (status, output, files), whether
a test starts it (run_bpd) or a runner does (through tests/bpd_client.py)."""

import os
import signal
import subprocess
import time

import pytest

from bpd.errors import BpdError
from bpd.io import bpd_executable
from tests.conftest import _ZYGOTE, BPD, ROOT, bpd_env, run_bpd


def _fresh(*args: str, bpd: str = BPD, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([bpd, *args], capture_output=True, text=True, timeout=120, env=bpd_env(), **kw)


@pytest.mark.parametrize("args", [("evaluate", "--help"), ("export", "no-such-student.pt", "--out", "x"),
                                  ("distill", "--teacher", "t.npz"), ("experiment", "status", "no-plan.yaml")])
def test_the_zygote_gives_a_fresh_process_status_and_output(tmp_path, args):
    got = run_bpd(*args, check=False, cwd=tmp_path)
    assert _ZYGOTE.proc is not None and _ZYGOTE.proc.poll() is None  # it went to the zygote
    want = _fresh(*args, cwd=tmp_path)
    assert (got.returncode, got.stdout, got.stderr) == (want.returncode, want.stdout, want.stderr)
    assert args[1] == "--help" or (got.returncode != 0 and got.stderr.count("\n") == 1)
    assert not (tmp_path / "x").exists()
    via_client = _fresh(*args, bpd=os.environ["BPD_EXECUTABLE"], cwd=tmp_path)  # as a runner's stage
    assert (via_client.returncode, via_client.stdout, via_client.stderr) == (want.returncode, want.stdout,
                                                                            want.stderr)


def _collect(out) -> list[str]:
    return ["collect", "--teacher", str(ROOT / "benchmarks" / "teachers" / "InvertedDoublePendulum-v5.npz"),
            "--out", str(out), "--steps", "100000000", "--no-progress"]


def test_a_command_past_its_timeout_is_killed(tmp_path):
    with pytest.raises(subprocess.TimeoutExpired):
        run_bpd(*_collect(tmp_path / "d.npz"), timeout=3)
    assert not (tmp_path / "d.npz").exists()
    assert run_bpd("evaluate", "--help").returncode == 0  # the zygote serves the next call


def test_the_clients_signal_reaches_the_command_and_its_death_ends_it(tmp_path):
    run_bpd("evaluate", "--help")  # the zygote started
    p = subprocess.Popen([os.environ["BPD_EXECUTABLE"], *_collect(tmp_path / "d.npz")], stderr=subprocess.PIPE,
                         text=True)
    time.sleep(5)  # started: a signal during the interpreter's own start would end either process by the signal
    p.send_signal(signal.SIGINT)  # as Ctrl-C: the command stops with one line, the client with its status
    _, err = p.communicate(timeout=60)
    want = subprocess.Popen([BPD, *_collect(tmp_path / "e.npz")], stderr=subprocess.PIPE, text=True)
    time.sleep(5)
    want.send_signal(signal.SIGINT)
    _, want_err = want.communicate(timeout=60)
    assert p.returncode == want.returncode != 0 and err.splitlines()[-1:] == want_err.splitlines()[-1:]
    p = subprocess.Popen([os.environ["BPD_EXECUTABLE"], *_collect(tmp_path / "f.npz")])
    time.sleep(2)
    p.kill()  # the client killed: the command goes too
    p.wait(10)
    time.sleep(1)
    ps = subprocess.run(["pgrep", "-f", str(tmp_path / "f.npz")], capture_output=True, text=True)
    assert ps.stdout.strip() == ""


def test_bpd_executable_is_the_wrapper_given_and_refuses_one_that_is_not_there(tmp_path, monkeypatch):
    monkeypatch.setenv("BPD_EXECUTABLE", os.environ["BPD_EXECUTABLE"])  # the tests' launcher, a file
    assert bpd_executable() == os.environ["BPD_EXECUTABLE"]
    monkeypatch.delenv("BPD_EXECUTABLE")
    assert bpd_executable() == BPD  # the installed one
    (tmp_path / "plain").write_text("")
    for bad in (tmp_path / "missing", tmp_path / "plain"):  # no file; a file that cannot be run
        monkeypatch.setenv("BPD_EXECUTABLE", str(bad))
        with pytest.raises(BpdError, match=f"^BPD_EXECUTABLE={bad}: not an executable file$"):
            bpd_executable()


def test_sigterm_and_sighup_stop_as_ctrl_c_unless_ignored_and_are_restored(monkeypatch):
    """bpd's main turns SIGTERM and SIGHUP into the Ctrl-C path while a command runs (bpd.process's handlers), leaves
    one ignored at start alone (`nohup`: a closed terminal leaves the command running), and restores all three
    handlers, Ctrl-C's too, after an in-process call."""
    import signal

    import bpd_app.cli as cli
    from bpd.process import on_interrupt, on_stop

    seen: list[dict] = []
    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    monkeypatch.setattr(cli, "_handle", lambda ns: seen.append({s: signal.getsignal(s) for s in sigs}) or 0)
    old = {s: signal.getsignal(s) for s in sigs}
    try:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        assert cli.main(["experiment", "status", "plan.yaml"]) == 0
        assert seen[-1] == {signal.SIGINT: on_interrupt, signal.SIGTERM: on_stop, signal.SIGHUP: signal.SIG_IGN}
        assert {s: signal.getsignal(s) for s in sigs} == {signal.SIGINT: old[signal.SIGINT],
                                                          signal.SIGTERM: signal.SIG_DFL,
                                                          signal.SIGHUP: signal.SIG_IGN}
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        assert cli.main(["experiment", "status", "plan.yaml"]) == 0
        assert seen[-1] == {signal.SIGINT: on_interrupt, signal.SIGTERM: on_stop, signal.SIGHUP: on_stop}
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_DFL
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def test_a_stopped_runner_passes_its_signal_to_the_stages_running():
    """`kill PID` of `bpd experiment run` reaches the runner alone: it sends the same signal to every stage still
    running (cells.stop_stages), which then stops as Ctrl-C stops it, so the runner does not wait for their cells."""
    import signal
    import subprocess

    from bpd_app.experiment import cells

    proc = subprocess.Popen(["sleep", "30"])
    with cells._LIVE_LOCK:
        cells._LIVE.add(proc)
    try:
        cells.stop_stages(signal.SIGTERM)
        assert proc.wait(timeout=10) == -signal.SIGTERM
    finally:
        with cells._LIVE_LOCK:
            cells._LIVE.discard(proc)
        proc.kill()


def _slow_child(tmp_path, monkeypatch):
    """A stand-in for the `bpd` that bpd.io.run_bpd starts: it writes `up` once its SIGTERM handler is set, and on
    SIGTERM takes a second before it writes the signal's number to `done` and exits."""
    import sys

    child, done, up = tmp_path / "child", tmp_path / "done", tmp_path / "up"
    child.write_text(f"#!{sys.executable}\nimport signal, sys, time\n"
                     f"def stop(n, f):\n    time.sleep(1.0)\n    open({str(done)!r}, 'w').write(str(n))\n"
                     "    sys.exit(143)\n"
                     "signal.signal(signal.SIGTERM, stop)\n"
                     f"open({str(up)!r}, 'w').close()\ntime.sleep(60)\n")
    child.chmod(0o755)
    monkeypatch.setenv("BPD_EXECUTABLE", str(child))
    return done, up


def _stop_when_up(up, raises: list) -> None:
    """Once `up` exists, interrupt the main thread (SIGUSR1, whose handler raises the next of `raises`) once per item,
    half a second apart."""
    import threading

    def run():
        for _ in range(600):
            if up.exists():
                break
            time.sleep(0.05)
        for _ in raises:
            signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)
            time.sleep(0.5)

    threading.Thread(target=run, daemon=True).start()


def _run_stopped(up, raises: list):
    """bpd.io.run_bpd of the stand-in, interrupted by `raises` once it is up; the interrupt it raises."""
    from bpd.process import run_bpd as run_child

    def stopped(signum, frame):
        raise raises.pop(0)

    old = signal.signal(signal.SIGUSR1, stopped)
    try:
        _stop_when_up(up, list(raises))
        with pytest.raises(KeyboardInterrupt) as e:
            run_child(["distill"])
    finally:
        signal.signal(signal.SIGUSR1, old)
    return e.value



def test_a_stopped_bpd_waits_for_the_bpd_it_started_to_stop_as_it_would(monkeypatch, tmp_path):
    """`bpd compress` stopped by SIGTERM passes the signal to the distill it runs (bpd.process.run_bpd) and waits for
    it: a child that takes a second to write its state on SIGTERM finishes it, where subprocess.run killed it after a
    quarter of a second."""
    from bpd.errors import Stopped

    done, up = _slow_child(tmp_path, monkeypatch)
    e = _run_stopped(up, [Stopped(signal.SIGTERM)])
    assert isinstance(e, Stopped) and e.signum == signal.SIGTERM
    assert done.read_text() == str(int(signal.SIGTERM))  # it had the signal and finished its second's work


def test_ctrl_c_that_reached_bpd_alone_is_passed_on_as_sigterm_and_a_second_kills_the_child(monkeypatch, tmp_path):
    """A Ctrl-C the child did not have (`kill -INT` of the parent alone) reaches it as SIGTERM, which a `bpd` already
    stopping ignores; a second Ctrl-C half a second later, before the child's second of work is done, kills it."""
    done, up = _slow_child(tmp_path, monkeypatch)
    e = _run_stopped(up, [KeyboardInterrupt()])
    assert type(e) is KeyboardInterrupt and done.read_text() == str(int(signal.SIGTERM))
    done.unlink()
    up.unlink()
    e = _run_stopped(up, [KeyboardInterrupt(), KeyboardInterrupt()])
    assert type(e) is KeyboardInterrupt
    time.sleep(1.2)
    assert not done.exists()  # killed within its second


def test_a_second_sigterm_or_sighup_is_ignored_while_bpd_stops_and_ctrl_c_still_interrupts():
    """bpd.process's handlers: the first SIGTERM (or SIGHUP) raises Stopped, later ones return (a closed terminal
    sends both; `bpd compress` passes its stop on to a child that may have had it); SIGINT raises every time."""
    from bpd.errors import Stopped
    from bpd.process import on_interrupt, on_stop, reset_stops

    reset_stops()
    try:
        with pytest.raises(Stopped):
            on_stop(signal.SIGHUP, None)
        assert on_stop(signal.SIGTERM, None) is None
        with pytest.raises(KeyboardInterrupt):
            on_interrupt(signal.SIGINT, None)
        reset_stops()
        with pytest.raises(KeyboardInterrupt):
            on_interrupt(signal.SIGINT, None)
        assert on_stop(signal.SIGTERM, None) is None  # a Ctrl-C began the stop
    finally:
        reset_stops()


def test_held_stops_are_raised_at_the_outermost_release_even_when_another_thread_takes_the_signal():
    """bpd.process.HeldStops: a SIGTERM sent while held, in a process with another thread (which a thread's mask
    would let take it), is noted, not raised, and raised by bpd's handler when the outermost hold is released; a hold
    counted by the caller itself (`entered`) is released as one made here."""
    import os
    import threading

    from bpd.errors import Stopped
    from bpd.process import HOLD, PENDING, HeldStops, on_stop, reset_stops

    old = signal.getsignal(signal.SIGTERM)
    busy = threading.Event()
    threading.Thread(target=busy.wait, args=(10,), daemon=True).start()
    reset_stops()
    try:
        signal.signal(signal.SIGTERM, on_stop)
        outer = HeldStops()
        HOLD[0] += 1
        inner = HeldStops(entered=True)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)  # the handler runs in the main thread by now: noted, not raised
        assert PENDING == [signal.SIGTERM]
        inner.release()  # the outer hold still holds it
        assert PENDING == [signal.SIGTERM] and HOLD[0] == 1
        with pytest.raises(Stopped):
            outer.release()
        outer.release()  # once only
        assert HOLD[0] == 0 and PENDING == []
        assert on_stop(signal.SIGTERM, None) is None  # the stop has begun: another is ignored
    finally:
        busy.set()
        signal.signal(signal.SIGTERM, old)
        reset_stops()


def test_a_ctrl_c_held_after_a_sigterm_began_the_stop_is_still_raised_at_release():
    """A SIGTERM has begun the stop; during a hold a closed terminal's SIGHUP (ignored: the stop has begun) and a
    Ctrl-C come: the release takes each as its handler would, so the Ctrl-C still interrupts."""
    from bpd.errors import Stopped
    from bpd.process import HOLD, PENDING, HeldStops, on_interrupt, on_stop, reset_stops

    reset_stops()
    try:
        with pytest.raises(Stopped):
            on_stop(signal.SIGTERM, None)
        held = HeldStops()
        on_stop(signal.SIGHUP, None)
        on_interrupt(signal.SIGINT, None)
        assert PENDING == [signal.SIGHUP, signal.SIGINT]
        with pytest.raises(KeyboardInterrupt):
            held.release()
        assert HOLD[0] == 0 and PENDING == []
    finally:
        reset_stops()
