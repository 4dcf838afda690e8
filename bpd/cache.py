"""A cache of builds and measurements, keyed by the content of everything that made them.

Exporting a student builds each candidate kernel for the host (the parity checks call it through ctypes) and for an
emulated Cortex-M core (its instructions, cycles and flash), and `bench` counts a host build's instructions under
callgrind. The same student exported again, measured again by `bench` or a plan's `--rebench`, or judged by `student
select --cost`, builds the same sources again. A build or a count depends on nothing but its inputs, so it is kept
under a key that digests all of them: the sources as the compiler sees them (preprocessed: every header they include,
without comments, each on its own), the flags, the inputs it ran on, the tools' versions (compiler, assembler, linker,
emulator, valgrind), the libraries linked (by path, size and time), for a host count the machine (CPU, C library),
and the project's own code that builds, emulates and counts (a change there is a new key, never a stale figure).
Timings of this machine (host nanoseconds) are never cached.

Where: $BPD_CACHE_DIR, else $XDG_CACHE_HOME/bpd, else ~/.cache/bpd; BPD_CACHE_DIR=off turns it off. Entries are
written atomically, so processes sharing the directory see a whole entry or none; a library cut short is built again.
Nothing is ever removed from it (a few kB an entry): deleting the directory at any time is safe.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import subprocess
from collections.abc import Iterable
from pathlib import Path


def cache_dir(kind: str) -> Path | None:
    """The directory of this kind of entry (made if need be), or None when the cache is off or cannot be written
    (a read-only home, say: everything is then built as if there were no cache)."""
    root = os.environ.get("BPD_CACHE_DIR")
    if root == "off":
        return None
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = str(Path(xdg) / "bpd")
    d = Path(root) / kind
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return d if os.access(d, os.W_OK) else None


@functools.cache
def tool_version(exe: str) -> str:
    """The first line of `exe --version` (a compiler's identity in a key); the path alone when it says nothing."""
    try:
        p = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
        return (p.stdout.strip().splitlines() or [exe])[0] + " @ " + exe
    except OSError:
        return exe


@functools.cache
def toolchain(cc: str, flags: tuple[str, ...] = ()) -> str:
    """What a build with cc for these target flags takes besides the sources: the compiler, its assembler and linker
    (each by its version line) and the libraries it links (the C and maths libraries, libgcc, the newlib stubs: each by
    its path, size and modification time, which a package update changes)."""
    def ask(*args: str) -> str:
        try:
            return subprocess.run([cc, *flags, *args], capture_output=True, text=True, timeout=30).stdout.strip()
        except OSError:
            return ""

    parts = [tool_version(cc), *(tool_version(ask(f"-print-prog-name={t}") or t) for t in ("as", "ld"))]
    for lib in [ask(f"-print-file-name={n}") for n in ("libc.a", "libm.a", "libnosys.a", "libc.so.6", "libm.so.6")] + [
            ask("-print-libgcc-file-name")]:
        q = Path(lib)
        if lib and q.is_absolute() and q.is_file():
            st = q.stat()
            parts.append(f"{q}:{st.st_size}:{st.st_mtime_ns}")
    return "\n".join(parts)


def host_identity() -> str:
    """The machine a host program runs on (the C library picks function variants by CPU): architecture, CPU model
    and flags, the C library's version."""
    import platform

    cpu = ""
    with contextlib.suppress(OSError):
        info = Path("/proc/cpuinfo").read_text()
        cpu = "\n".join(sorted({ln for ln in info.splitlines() if ln.startswith(("model name", "flags"))}))
    libc = os.confstr("CS_GNU_LIBC_VERSION") if "CS_GNU_LIBC_VERSION" in os.confstr_names else ""
    return f"{platform.machine()}\n{cpu}\n{libc}"


class Key:
    """A running digest of a build's inputs. `ok` turns False when an input could not be read as the build will
    read it (a source the preprocessor refuses): such a key is not used, the build runs and is not kept."""

    def __init__(self, kind: str) -> None:
        self._h = hashlib.sha256(kind.encode())
        self.ok = True

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
        """Each C source as the compiler sees it: preprocessed on its own with the build's flags (`cc -E -P`), so
        every header it includes counts and its comments (a generated file's "regenerate with" line, which names its
        directory) do not. The flags count too, but for the include paths (two exports' directories differ, their
        headers count through the text)."""
        self.text(*(f for f in flags if not f.startswith("-I")))  # the include paths count by what they gave
        for src in map(Path, sources):
            p = subprocess.run([cc, *flags, "-E", "-P", str(src)], capture_output=True)
            if p.returncode != 0:
                self.ok = False
            self.text(src.name).data(p.stdout)
        return self

    def hexdigest(self) -> str | None:
        """The key, or None when an input could not be read as the build reads it."""
        return self._h.hexdigest() if self.ok else None


def entry(kind: str, key: Key) -> Path | None:
    """Where the entry of this key lives, or None when the cache is off or the key unusable (nothing is then kept)."""
    store = cache_dir(kind)
    k = key.hexdigest() if store is not None else None
    return store / f"{k}.json" if store is not None and k else None


def load(path: Path | None, fields: dict[str, type | tuple[type, ...]] | None = None) -> dict | None:
    """An entry written before, or None (none kept, or unreadable: measured again and replaced). fields: the
    entry's keys and their types; an entry that is no JSON object or lacks one of them (edited by hand, or written
    by other code under the same key) is unreadable too."""
    from bpd.errors import BpdError
    from bpd.io import read_json

    if path is None or not path.is_file():
        return None
    with contextlib.suppress(BpdError):
        e = read_json(path, "cache entry")
        if isinstance(e, dict) and all(isinstance(e.get(k), t) for k, t in (fields or {}).items()):
            return e
    return None


def store(path: Path | None, value: dict) -> None:
    """Keep value at path (atomically); a cache that cannot be written (a full disk) loses the entry, not the build."""
    from bpd.io import write_json

    if path is not None:
        with contextlib.suppress(OSError):
            write_json(path, value)
