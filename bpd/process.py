"""Child processes that end with the bpd that started them, and stops held while something must not be cut short."""

from __future__ import annotations

import os
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


STOPS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class HeldStops:
    """Ctrl-C, SIGTERM and SIGHUP held from here until release(): each is noted by a handler of this object's
    instead of raising, then release() puts the handlers back and raises the first one noted as its own handler
    would have. A thread's signal mask would not do: a process with other threads (torch's, onnxruntime's, the live
    view's server) takes the signal on one of them, and Python runs the handler in the main thread anyway. A signal
    ignored at the start stays ignored. Held only in the main thread (elsewhere Python cannot set handlers, and a
    signal does not reach Python code there): on another thread nothing is held."""

    def __init__(self) -> None:
        self.old: dict[int, object] = {}
        self.pending: list[int] = []
        self.released = False
        if threading.current_thread() is not threading.main_thread():
            return
        for s in STOPS:
            h = signal.getsignal(s)
            if h is not signal.SIG_IGN and h is not None:
                self.old[s] = h
                signal.signal(s, self._note)

    def _note(self, signum: int, frame) -> None:
        if self.released:  # arrived while release() puts the handlers back: as the handler put back would
            self._act(signum, frame)
        else:
            self.pending.append(signum)

    def _act(self, signum: int, frame) -> None:
        h = self.old.get(signum)
        if callable(h):
            h(signum, frame)
        elif h == signal.SIG_DFL:  # the default action (SIGTERM, SIGHUP: the process ends by the signal)
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    def release(self) -> None:
        """The handlers as they were; the first stop held, if any, raised now (its handler run)."""
        if self.released:
            return
        self.released = True
        for s, h in self.old.items():
            signal.signal(s, h)  # type: ignore[arg-type]
        if self.pending:
            first = self.pending[0]
            self.pending = []
            self._act(first, None)
