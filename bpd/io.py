"""Atomic file writing, hashing and the small self-describing array format artifacts use.

Every artifact bpd writes goes through these helpers: the file appears under its final
name only when complete, so an interrupted run never leaves a half-written checkpoint.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bpd.errors import BpdError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Call write(f) on a temporary file next to path, fsync it, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda f: f.write(text), mode="w")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_arrays(path: str | os.PathLike, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    """Write an .npz holding named arrays plus a JSON metadata record under the key 'meta'."""
    if "meta" in arrays:
        raise ValueError("'meta' is reserved")
    buf = io.BytesIO()
    # numpy's stub lets a **dict fill allow_pickle: bool, so any unpacked dict of arrays is refused
    np.savez_compressed(buf, meta=np.array(json.dumps(meta, sort_keys=True, default=_json_default)),
                        **arrays)  # type: ignore[arg-type]
    atomic_write(path, lambda f: f.write(buf.getvalue()))


class NoRecord(BpdError):
    """An .npz without bpd's metadata record: another tool's arrays."""


def load_arrays(path: str | os.PathLike, expect_format: str) -> tuple[dict, dict[str, np.ndarray]]:
    """Read a file written by save_arrays; never unpickles. Errors name the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise BpdError(f"{path}: " + (f"a directory, expected a {expect_format} file" if path.is_dir() else
                                      "no such file"))
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise BpdError(f"{path}: not a readable {expect_format} file ({e.__class__.__name__})") from None
    if "meta" not in arrays:
        raise NoRecord(f"{path}: not a {expect_format} file (no metadata record)")
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except json.JSONDecodeError:
        raise BpdError(f"{path}: corrupt metadata record") from None
    if meta.get("format") != expect_format:
        raise BpdError(f"{path}: is a {meta.get('format', 'unknown')!r} file, expected {expect_format!r}")
    return meta, arrays


def save_png(fig: Figure, path: str | os.PathLike, dpi: int = 100) -> None:
    """Render a matplotlib figure and write it atomically, then close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write(path, lambda f: f.write(buf.getvalue()))


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Parse a JSON file written by bpd; a missing or corrupt file is a one-line BpdError."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise BpdError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BpdError(f"{path}: corrupt {what} (not valid JSON)") from None
    except OSError as e:
        raise BpdError(f"{path}: cannot be read ({e.strerror or e.__class__.__name__})") from None


def _existing_ancestor(p: Path) -> Path:
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return parent


def _writable(d: Path) -> bool:
    """Whether a file can be created in directory d (tried, not guessed: root ignores mode bits)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".bpd-probe-", dir=d)
    except OSError:
        return False
    os.close(fd)
    os.unlink(tmp)
    return True


def _check_kind(p: Path) -> None:
    """An existing output must be a regular file or a directory: a device node, a FIFO or a socket
    would be replaced by a file (or, for a device, written to)."""
    if (p.exists() or p.is_symlink()) and not (p.is_file() or p.is_dir()):
        kind = ("a character device" if p.is_char_device() else "a block device" if p.is_block_device() else
                "a FIFO" if p.is_fifo() else "a socket" if p.is_socket() else "a dangling link")
        raise BpdError(f"{p}: is {kind}, not a regular file or directory; give a file path")


def _same_place(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


OUTPUT_FIELDS = ("out", "build_dir", "work_dir", "log")  # the config fields that name what a command writes
COMMAND_FIELDS = ("command", "subcommand")  # the parser's own: the words that name the command, not paths


def check_outputs(values: dict[str, Any]) -> None:
    """A command's outputs (the OUTPUT_FIELDS among values) against everything else it names: an output
    that is one of the command's inputs (the teacher a dataset would be written over), or an existing
    thing that is neither a regular file nor a directory, is a one-line error before any work."""
    from bpd.config import flag_name

    inputs = []
    for name, v in values.items():
        for x in (v if isinstance(v, list) else [v]):
            if (name not in OUTPUT_FIELDS + COMMAND_FIELDS and isinstance(x, str) and x
                    and os.path.lexists(x)):
                inputs.append((name, Path(x)))
    for name in OUTPUT_FIELDS:
        v = values.get(name)
        if not isinstance(v, str) or not v:
            continue
        p = Path(v)
        _check_kind(p)
        for other, q in inputs:
            if _same_place(p, q):
                raise BpdError(f"{p}: {flag_name(name)} names the command's input {flag_name(other)}; "
                               "write the output elsewhere")


def check_output_path(path: str | os.PathLike) -> None:
    """Fail before any work if `path` cannot be written as a file."""
    p = Path(path)
    _check_kind(p)
    if p.is_dir():
        raise BpdError(f"{p}: is a directory, expected a file path")
    parent = _existing_ancestor(p)
    if not parent.is_dir():
        raise BpdError(f"{p}: cannot be created ({parent} is not a directory)")
    if not _writable(parent):
        raise BpdError(f"{p}: cannot be written ({parent} is not writable)")


def check_output_dir(path: str | os.PathLike, own: str | None = None, what: str = "") -> None:
    """Fail before any work if `path` cannot be created, or written, as a directory. own: the file that marks a
    directory the command may replace (export.json, say, for `what` "an export directory"): a directory with files
    but without it is someone else's."""
    p = Path(path)
    _check_kind(p)
    if p.exists() and not p.is_dir():
        raise BpdError(f"{p}: exists and is not a directory")
    if own is not None and p.is_dir() and any(p.iterdir()) and not (p / own).is_file():
        raise BpdError(f"{p}: exists and is not {what} (no {own}); choose another --out or remove it")
    parent = _existing_ancestor(p)
    if not parent.is_dir():
        raise BpdError(f"{p}: cannot be created ({parent} is not a directory)")
    for d in [parent] + ([p] if p.is_dir() else []):
        if not _writable(d):
            raise BpdError(f"{p}: cannot be written ({d} is not writable)")


class StagedDir:
    """A directory built beside its final place and swapped in only when complete.

        with StagedDir("export") as stage:   # stage.path: an empty sibling directory .export.stage-XXXX
            ...write files into stage.path...
            stage.commit()                   # the previous export is replaced only now

    Leaving the block without commit() (any exception) removes the stage: the previous directory,
    if any, stays byte for byte and no partial directory is left behind. A process killed outright (kill -9, power)
    cannot clean up: the stage's name holds its host and process id, and the next StagedDir of the same place removes
    the stages of processes of this host that are gone, and puts back a previous directory that a kill caught in
    the middle of the swap (moved aside, its replacement not yet in).
    """

    def __init__(self, final: str | os.PathLike) -> None:
        self.final = Path(final)
        self._path: Path | None = None
        self.committed = False
        self.created: list[Path] = []  # parent directories made for the stage, deepest first

    def __enter__(self) -> StagedDir:
        here, whole = Path.cwd(), Path(os.path.abspath(self.final))
        if whole == here or whole in here.parents:  # its swap would move the working directory away
            raise BpdError(f"{self.final}: is the working directory or holds it, which cannot be swapped for a new "
                           "directory; give a directory below this one")
        if os.path.ismount(whole):
            raise BpdError(f"{self.final}: is a mount point, which cannot be swapped for a new directory; give a "
                           "directory inside it")
        p = self.final.parent
        while not p.exists():
            self.created.append(p)
            p = p.parent
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self._left_by_the_dead()
        self._path = Path(tempfile.mkdtemp(prefix=self._prefix("stage"), dir=self.final.parent))
        return self

    def _prefix(self, kind: str) -> str:
        """A stage's (or a moved-aside previous directory's) name up to its random part: place, host, process."""
        return f".{self.final.name}.{kind}-{_host()}-{os.getpid()}-"

    def _left_by_the_dead(self) -> None:
        """Remove what a killed StagedDir of this place left (its stage; its previous directory, put back first
        where the final place is empty). Another host's, or a live process's, are not touched."""
        import glob
        import re

        for kind in ("old", "stage"):
            ours = re.compile(re.escape(f".{self.final.name}.{kind}-{_host()}-") + r"(\d+)-")
            for d in sorted(self.final.parent.glob(f"{glob.escape('.' + self.final.name)}.{kind}-*")):
                m = ours.match(d.name)
                if m is None or _alive(int(m.group(1))):
                    continue
                try:
                    if kind == "old" and (d / "d").is_dir() and not os.path.lexists(self.final):
                        os.replace(d / "d", self.final)  # the swap was cut between its two moves: the previous back
                except OSError:
                    continue  # not ours to move after all: left as it is
                shutil.rmtree(d, ignore_errors=True)

    @property
    def path(self) -> Path:
        """The stage directory (exists inside the with-block)."""
        if self._path is None:
            raise RuntimeError("StagedDir.path is only there inside its with-block")
        return self._path

    def commit(self) -> None:
        """Swap the stage into the final place (the old directory is removed after the swap)."""
        import shutil

        old = None
        if self.final.exists():
            old = Path(tempfile.mkdtemp(prefix=self._prefix("old"), dir=self.final.parent))
            try:
                os.replace(self.final, old / "d")
            except BaseException:
                old.rmdir()
                raise
        try:
            os.replace(self.path, self.final)
        except BaseException:
            if old is not None:
                os.replace(old / "d", self.final)
                old.rmdir()
            raise
        self.committed = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def __exit__(self, *exc) -> None:
        import shutil

        if not self.committed and self._path is not None:
            shutil.rmtree(self._path, ignore_errors=True)
            for d in self.created:
                try:
                    d.rmdir()
                except OSError:
                    break


def _alive(pid: int) -> bool:
    """Whether a process of this host has that id (one of another user's counts as alive)."""
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _host() -> str:
    """Where this process's ids are its own, for a stage's name: the host's name as letters and digits (its first 24)
    and a hash of the whole name and of the PID namespace (the ids a container sees), so that a host whose name
    agrees in those letters (a long common prefix on a shared disk, '-' against '.'), or a container of this host, is
    not taken for this one: there a process id says nothing of whether its stage is still being written."""
    import hashlib
    import socket

    name = socket.gethostname()
    try:
        ns = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        ns = 0
    digest = hashlib.sha256(f"{name}\0{ns}".encode()).hexdigest()[:8]
    return "".join(c if c.isalnum() else "_" for c in name)[:24] + "_" + digest


class _TwiceGiven(Exception):
    """A key given twice in one YAML mapping (read_yaml names the file)."""


@functools.cache
def _strict_loader() -> type:
    """yaml.SafeLoader refusing a key given twice in one mapping, made once (yaml is imported where it is used)."""
    import yaml

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen: set = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True) if key_node.tag != "tag:yaml.org,2002:merge" else "<<"
                if isinstance(key, (str, int, float, bool)) and key in seen:
                    raise _TwiceGiven(f"line {key_node.start_mark.line + 1}: {str(key)[:60]!r} is given twice in one "
                                      "mapping (YAML would keep the last silently)")
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    # YAML 1.1 (PyYAML) reads 1e-9 and 1e3 as text, wanting 1.0e-9; YAML 1.2 and every reader of numbers take them:
    # so does this one (a rig's 1e-9 was refused as "must be a finite number (got '1e-9')")
    import re

    Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(
        r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))
    return Loader


def read_yaml(path: str | os.PathLike) -> Any:
    """Parse a YAML file; a syntax error, a key given twice in one mapping (YAML would keep the last silently: a
    plan's method label or a rig's field written twice) or an unreadable file is one line naming the place."""
    import yaml

    p = Path(path)
    try:
        return yaml.load(p.read_text(), Loader=_strict_loader())  # a SafeLoader
    except _TwiceGiven as e:
        raise BpdError(f"{p}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = " ".join(str(getattr(e, "problem", None) or e).split())
        raise BpdError(f"{p}: YAML syntax error{where}: {problem}") from None
    except UnicodeDecodeError:
        raise BpdError(f"{p}: not a YAML file (not text)") from None
    except OSError as e:
        raise BpdError(f"{p}: cannot be read ({e.strerror or e.__class__.__name__})") from None


PROJECT_ROOT = Path(__file__).resolve().parent.parent


def portable_path(p: str | os.PathLike) -> str:
    """A path as results record it: relative to the project when inside it, else as $BPD_RUNS/... under
    the experiment run root where $BPD_RUNS is set, else relative to the working directory when inside
    that, else the file name alone (never a machine's absolute path)."""
    q = Path(p)
    if not q.is_absolute():
        return str(p)
    q = q.resolve()
    runs = os.environ.get("BPD_RUNS")
    for base, prefix in ((PROJECT_ROOT, ""), *(((Path(runs).resolve(), "$BPD_RUNS/"),) if runs else ()),
                         (Path.cwd().resolve(), "")):
        try:
            return prefix + q.relative_to(base).as_posix()
        except ValueError:
            continue
    return q.name


def path_for_record(p: str | os.PathLike, record_dir: str | os.PathLike) -> str:
    """A path as a record in record_dir writes it: relative to that directory, so that the record (an
    export, a run) can be read from any working directory and moved together with what it names."""
    return Path(os.path.relpath(Path(p).resolve(), Path(record_dir).resolve())).as_posix()


def inputs_for_record(values: dict[str, Any], keys: tuple[str, ...], record_dir: str | os.PathLike) -> dict[str, str]:
    """The input paths among values[keys] given relative to the working directory, as a record in record_dir (a run's
    config.json) writes them: relative to record_dir (path_for_record), so that the commands reading the record find
    them from any directory; absolute paths and Minari names (`minari:ID`) stay as given, and are left out here."""
    return {k: path_for_record(v, record_dir) for k in keys if isinstance(v := values.get(k), str) and v
            and not v.startswith("minari:") and not Path(v).is_absolute()}


def path_from_record(recorded: str, record_dir: str | os.PathLike) -> Path:
    """The path a record in record_dir names: relative to the record's directory; a record written
    before paths were recorded that way named it from the working directory, which is tried second."""
    p = Path(recorded)
    if p.is_absolute():
        return p
    beside = Path(record_dir) / p
    if beside.exists():  # run/../data.npz read as data.npz where that is the same file (not through a symlink)
        plain = Path(os.path.normpath(beside))
        return plain if plain.exists() and os.path.samefile(plain, beside) else beside
    return beside if not p.exists() else p


def portable_argv(argv: list[str]) -> list[str]:
    """A command line with every absolute path (also in --opt=PATH) made portable."""
    out = []
    for a in argv:
        opt, eq, val = a.partition("=") if a.startswith("--") else ("", "", a)
        out.append(f"{opt}={portable_path(val)}" if eq and val.startswith("/") else
                   portable_path(a) if a.startswith("/") else a)
    return out


def bpd_executable() -> str:
    """The `bpd` command that runners and tools start: BPD_EXECUTABLE where set (a wrapper, for example one that
    sets a stage's priority or cores, or the tests' launcher), else the one beside the running Python, else the one
    on the PATH."""
    given = os.environ.get("BPD_EXECUTABLE")
    if given:
        if not (os.path.isfile(given) and os.access(given, os.X_OK)):
            raise BpdError(f"BPD_EXECUTABLE={given}: not an executable file")
        return given
    local = Path(sys.executable).with_name("bpd")
    return str(local) if local.exists() else (shutil.which("bpd") or "bpd")


def write_results(out: Path, res: dict, markdown: str) -> None:
    """A benchmark script's results: OUT.json and OUT.md (directories made), and the markdown printed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out.with_suffix(".json"), res)
    write_text(out.with_suffix(".md"), markdown)
    print(markdown)


def kept_rows(out: Path, rows: list[dict], key: tuple[str, ...], same: dict,
              wanted: Callable[[dict], bool] = lambda r: True) -> list[dict]:
    """The rows of a results file OUT.json (a benchmark script's earlier run) that `rows` do not measure again: those
    whose `key` fields no new row shares and that are `wanted` (cells the plans still hold), from a file whose `same`
    fields equal these (the same plan, row, kernel form...), each marked `"kept": true`. Run roots do not outlive a
    machine; a script run on the cells a new run root holds keeps the rest of its earlier figures this way rather
    than dropping them. Nothing where OUT.json is absent; where it was written for something else, nothing, and a
    line says so. A corrupt file is a BpdError."""
    p = out.with_suffix(".json")
    if not p.is_file():
        return []
    old = read_json(p, "results file")
    differ = [k for k, v in same.items() if not isinstance(old, dict) or old.get(k) != v]
    if differ or not isinstance(old.get("rows"), list):
        print(f"{p}: written for another {', '.join(differ) or 'kind of results'}; none of its rows kept",
              file=sys.stderr)
        return []
    new = {tuple(r.get(k) for k in key) for r in rows}
    return [r | {"kept": True} for r in old["rows"] if isinstance(r, dict) and all(k in r for k in key)
            and tuple(r[k] for k in key) not in new and wanted(r)]
