"""The C compiler, in one place: the strict flags every project C source compiles with, where the
compiler comes from, and compiling to a temporary name that is renamed into place only on success.

Every build of project C (the policy kernel on the host, the software device, firmware images, the
fuzz harnesses) takes its warning set from STRICT, so a flag changed here changes all of them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from pathlib import Path

from bpd.errors import BpdError

STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]  # warnings are errors
# What a firmware project may build the export's C with, beyond STRICT: every kernel form compiles clean under it
# for the host and each Cortex-M part at -O0, -O2 and -Os (tests/test_walk_c_user.py)
INTEGRATION = [*STRICT, "-Wconversion", "-Wsign-conversion", "-Wshadow", "-Wcast-qual", "-Wstrict-prototypes"]
OPT = ["-O2"]


def find_cc() -> str:
    """$CC if set, else cc, gcc or clang on the PATH."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        raise BpdError("no C compiler found (set CC or install gcc)")
    return cc


def find_clang() -> str:
    """clang itself (libFuzzer and its sanitizers need it, whatever $CC is)."""
    cc = shutil.which("clang")
    if cc is None:
        raise BpdError("clang not found: install clang (`make system-deps` does it on Debian)")
    return cc


def first_error(stderr: str) -> str:
    """The compiler's first error line (its "In function" context lines skipped), else its first line."""
    lines = stderr.strip().splitlines() or ["?"]
    return next((ln for ln in lines if "error" in ln), lines[0])


def compile_to(out: Path, args: list[str], what: str, cc: str | None = None) -> Path:
    """Run the compiler with args, writing a temporary file renamed to out only on success; a failure
    is a one-line BpdError naming what was built and the compiler's first message. The compiler runs in a process
    group of its own, ended whole when this process stops (Ctrl-C, SIGTERM): killing the driver alone left what it
    had started (cc1, as, ld) running, and a process in a group of its own (the simulated rig under `bpd rig check`
    or `bpd hil run`, hil/trial.py RigProcess) passes on no terminal's Ctrl-C to its children."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    p = subprocess.Popen([cc or find_cc(), *args, "-o", str(tmp)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, process_group=0)
    try:
        _, err = p.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        tmp.unlink(missing_ok=True)
        raise
    if p.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise BpdError(f"{what} failed: {first_error(err)}")
    os.replace(tmp, out)
    return out
