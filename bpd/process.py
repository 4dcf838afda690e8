"""Child processes that end with the bpd that started them."""

from __future__ import annotations

import signal
import sys


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
