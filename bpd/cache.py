"""A cache of builds and measurements, keyed by the content of everything that made them.

Exporting a student builds each candidate kernel for the host (the parity checks call it through ctypes) and for an
emulated Cortex-M core (its instructions, cycles and flash), and `bench` counts a host build's instructions under
callgrind. The same student exported again, measured again by `bench` or a plan's `--rebench`, or judged by `student
select --cost`, builds the same sources again. A build or a count depends on nothing but its inputs, so it is kept
under a key that digests all of them: the sources as the compiler sees them (preprocessed: every header they include,
without comments), the flags, the inputs it ran on, the tools' versions (compiler, emulator, valgrind, C library),
and the project's own code that builds, emulates and counts (a change there is a new key, never a stale figure).
Timings of this machine (host nanoseconds) are never cached.

Where: $BPD_CACHE_DIR, else $XDG_CACHE_HOME/bpd, else ~/.cache/bpd; BPD_CACHE_DIR=off turns it off. Entries are
written atomically, so processes sharing the directory see a whole entry or none; deleting the directory at any time
is safe.
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
from collections.abc import Iterable
from pathlib import Path


def cache_dir(kind: str) -> Path | None:
    """The directory of this kind of entry, or None when the cache is off."""
    root = os.environ.get("BPD_CACHE_DIR")
    if root == "off":
        return None
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = str(Path(xdg) / "bpd")
    return Path(root) / kind


@functools.cache
def tool_version(exe: str) -> str:
    """The first line of `exe --version` (a compiler's identity in a key); the path alone when it says nothing."""
    try:
        p = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
        return (p.stdout.strip().splitlines() or [exe])[0] + " @ " + exe
    except OSError:
        return exe


class Key:
    """A running digest of a build's inputs."""

    def __init__(self, kind: str) -> None:
        self._h = hashlib.sha256(kind.encode())

    def text(self, *parts: object) -> Key:
        for p in parts:
            b = str(p).encode()
            self._h.update(len(b).to_bytes(8, "little") + b)
        return self

    def data(self, b: bytes) -> Key:
        self._h.update(len(b).to_bytes(8, "little") + b)
        return self

    def files(self, paths: Iterable[Path]) -> Key:
        """Each file's name and content (a missing one by its name alone)."""
        for p in paths:
            p = Path(p)
            self.text(p.name)
            if p.is_file():
                self.data(p.read_bytes())
        return self

    def preprocessed(self, cc: str, flags: list[str], sources: Iterable[Path]) -> Key:
        """Each C source as the compiler sees it: preprocessed with the build's flags (`cc -E -P`), so every header
        it includes counts and its comments (a generated file's "regenerate with" line, which names its
        directory) do not. The flags count too, but for the include paths (two exports' directories differ, their
        headers count through the text). A source the preprocessor refuses counts by its bytes (its build then fails
        anyway)."""
        srcs = [Path(x) for x in sources]
        self.text(*(f for f in flags if not f.startswith("-I")))  # the include paths count by what they gave
        p = subprocess.run([cc, *flags, "-E", "-P", *map(str, srcs)], capture_output=True)  # one call, in order
        if p.returncode == 0:
            return self.text(*(x.name for x in srcs)).data(p.stdout)
        return self.files(srcs)

    def hexdigest(self) -> str:
        return self._h.hexdigest()
