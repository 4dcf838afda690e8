"""Child processes that end with the bpd that started them, and stops held while something must not be cut short."""

from __future__ import annotations

import signal
import sys
import threading


def die_with_parent() -> None:
    """A `preexec_fn` for subprocess.Popen: on Linux the child gets SIGTERM when its parent dies, by
    kill -9 included, so an emulator or a simulated rig is never left running alone. Elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    PR_SET_PDEATHSIG = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # no prctl: the parent's own clean-up is all there is
        pass


# bpd's stop handlers (bpd_app/cli.py installs them): Ctrl-C raises KeyboardInterrupt, SIGTERM and SIGHUP raise
# Stopped, as Ctrl-C stops a command. Their state is plain lists, changed without a call: Python runs a signal's
# handler only at certain points of the bytecode (a call among them), never inside `HOLD[0] += 1`.
HOLD = [0]  # how deep the holds go: while above 0 a stop is noted in PENDING, not raised
PENDING: list[int] = []
STOPPING = [False]  # a stop has begun: a later SIGTERM or SIGHUP is not raised again


def reset_stops() -> None:
    """No hold, nothing noted, no stop begun (each command's start)."""
    HOLD[0] = 0
    PENDING.clear()
    STOPPING[0] = False


def on_stop(signum: int, _frame) -> None:
    """SIGTERM or SIGHUP: Stopped, once. While the command stops, another is ignored (a closed terminal sends SIGHUP
    then SIGTERM, and `bpd compress` passes its own stop on to the `bpd` it runs, which may have had it already),
    so that a checkpoint or a trial's stop is not cut short; a second Ctrl-C still interrupts, SIGKILL still ends.
    Noted instead while held."""
    from bpd.errors import Stopped

    if HOLD[0]:
        PENDING.append(signum)
        return
    if STOPPING[0]:
        return
    STOPPING[0] = True
    raise Stopped(signum)


def on_interrupt(signum: int, _frame) -> None:
    """SIGINT: KeyboardInterrupt, as Python's own handler raises it, every time; a stop has begun from then on.
    Noted instead while held."""
    if HOLD[0]:
        PENDING.append(signum)
        return
    STOPPING[0] = True
    raise KeyboardInterrupt


class HeldStops:
    """Ctrl-C, SIGTERM and SIGHUP held from here until release(), which takes those that came meanwhile (once the
    outermost hold is released) as their handlers would have, in order: for the moments where a stop must not cut in,
    such as between opening a device's port and the try whose finally stops it. The handlers note the stop (bpd's
    own, on_stop and on_interrupt: elsewhere nothing is held), and they run in the main thread whichever thread took
    the signal, which a thread's signal mask would not hold. `entered=True`: the caller has already counted this
    hold itself, with `HOLD[0] += 1` (no call, so that no stop can come between the point it guards and the hold)."""

    def __init__(self, entered: bool = False) -> None:
        assert threading.current_thread() is threading.main_thread(), "stops are held in the main thread only"
        if not entered:
            HOLD[0] += 1
        self.released = False

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        HOLD[0] -= 1
        if HOLD[0] == 0 and PENDING:  # each noted stop as its handler would have taken it, in order: the first
            noted = list(PENDING)  # that raises ends it (a Ctrl-C after a SIGTERM that began the stop still raises)
            PENDING.clear()
            for signum in noted:
                (on_interrupt if signum == signal.SIGINT else on_stop)(signum, None)


def run_bpd(args: list[str]) -> int:
    """Run `bpd args` in the foreground and return its exit code. Stopped while it runs, this passes the stop on and
    waits for the child to stop as it would stop alone (its checkpoint and summary written), where subprocess.run
    killed it a quarter of a second later: SIGTERM or SIGHUP as itself, Ctrl-C (which the child has from the terminal
    as well, or not, when only this process had it) as SIGTERM, which a `bpd` already stopping ignores
    (on_stop above). A second Ctrl-C while waiting kills the child. No stop falls between the child's start and the
    wait: the stops are held until then (HeldStops)."""
    import subprocess
    import time

    from bpd.errors import Stopped
    from bpd.io import bpd_executable

    held = HeldStops()
    try:
        proc = subprocess.Popen([bpd_executable(), *args])
    except BaseException:
        held.release()
        raise
    stop: KeyboardInterrupt | None = None
    while True:
        try:
            held.release()  # a stop held since the start is raised here (once)
            while proc.poll() is None:
                time.sleep(0.05)
            break
        except KeyboardInterrupt as e:
            try:
                if stop is not None and not isinstance(e, Stopped):  # a second Ctrl-C: the child goes now
                    raise
                stop = stop or e
                if proc.poll() is None:
                    proc.send_signal(e.signum if isinstance(e, Stopped) else signal.SIGTERM)
            except KeyboardInterrupt:  # that, or a second Ctrl-C as the first is passed on
                proc.kill()
                proc.wait()
                raise
    if stop is not None:
        raise stop
    return int(proc.returncode)
