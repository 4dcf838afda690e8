import atexit
import functools
import hashlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from bpd.io import bpd_executable

ROOT = Path(__file__).resolve().parent.parent
BPD = os.environ.get("BPD_TEST_BPD") or bpd_executable()  # the installed `bpd`, not the launcher below

torch.set_num_threads(1)


def bpd_env() -> dict:
    """The environment the tests start `bpd` with: the worker's, unbuffered, without BPD_DEBUG's tracebacks."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("BPD_DEBUG", None)
    return env


def run_bpd(*args: str, check: bool = True, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """Run the installed `bpd` command the way a user does: a fresh process, or for the commands that import
    torch, a process forked from one that has imported the third-party libraries alone (tests/bpd_zygote.py: the
    same exit status, output and files; some 2-5 s of CPU less a call)."""
    env = bpd_env()
    p = None
    if args and args[0] in _ZYGOTE_COMMANDS and set(kw) <= {"cwd"}:
        p = _ZYGOTE.run([BPD, *args], env, kw.get("cwd"), timeout)
    else:
        _ZYGOTE.ensure()  # for the stages of the runners (experiment run) and tools this call starts
    if p is None:
        p = subprocess.run([BPD, *args], capture_output=True, text=True, timeout=timeout, env=env, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"bpd {' '.join(args)} failed ({p.returncode}):\n{p.stderr}")
    return p


# the commands run_bpd sends to the zygote: those that import torch, and `experiment` (its tables import matplotlib;
# the others start in well under a second); the `bpd` that runners and tools start (below) sends every command there,
# `hil` and `rig` too
_ZYGOTE_COMMANDS = {"distill", "export", "evaluate", "collect", "student", "teacher", "compress", "baseline",
                    "experiment"}


class _Zygote:
    """The worker's tests/bpd_zygote.py, started at the worker's first run_bpd and ended with the worker; the `bpd`
    that runners and tools start in the tests is tests/bpd_client.py (BPD_EXECUTABLE), which has it run their
    commands. run_bpd sends a call there when its environment agrees with the zygote's where imports read it."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.dir = Path(tempfile.mkdtemp(prefix="bpdz-"))
        self.path = str(self.dir / "s")
        client = self.dir / "bpd"  # the client, run by this Python
        client.write_text(f"#!{sys.executable}\nimport runpy\n"
                          f"runpy.run_path({str(ROOT / 'tests' / 'bpd_client.py')!r}, run_name='__main__')\n")
        client.chmod(0o755)
        from tests.bpd_zygote import IMPORT_VARS

        os.environ.update(BPD_EXECUTABLE=str(client), BPD_TEST_BPD=BPD, BPD_TEST_ZYGOTE=self.path,
                          BPD_TEST_ZYGOTE_ENV=json.dumps({k: v for k, v in os.environ.items()
                                                          if k.startswith(IMPORT_VARS)}))
        atexit.register(self.close)

    def ensure(self) -> None:
        if self.proc is None:
            self.proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "bpd_zygote.py"), self.path],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT,
                                         env=dict(os.environ, PYTHONUNBUFFERED="1"))
            assert self.proc.stdout is not None
            if self.proc.stdout.readline().strip() != b"ready":
                raise RuntimeError(f"tests/bpd_zygote.py did not start (exit {self.proc.wait()})")

    def run(self, argv: list[str], env: dict, cwd, timeout: float) -> subprocess.CompletedProcess | None:
        from tests.bpd_client import read_line, start

        self.ensure()
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, open(os.devnull, "rb") as null:
            started = start(self.path, argv, env, str(cwd or os.getcwd()), [null.fileno(), out.fileno(),
                                                                             err.fileno()])
            if started is None:
                return None
            conn, pid = started
            with conn:
                if not select.select([conn], [], [], timeout)[0]:
                    os.kill(pid, signal.SIGKILL)
                    read_line(conn)
                    raise subprocess.TimeoutExpired(argv, timeout)
                line = read_line(conn)
            if not line:
                raise RuntimeError("tests/bpd_zygote.py's handler ended without the command's status")
            texts = []
            for f in (out, err):
                f.seek(0)
                texts.append(f.read().decode(errors="replace"))
            return subprocess.CompletedProcess(argv, json.loads(line)["status"], *texts)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


_ZYGOTE = _Zygote()


@pytest.fixture(scope="session")
def benchmark_script():
    """A script under benchmarks/ loaded as a module (they run as files, not as a package)."""
    import importlib.util

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    return load


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory):
    """A teacher, dataset and student made on a tiny budget (seconds), shared by tests."""
    d = tmp_path_factory.mktemp("tiny")
    run_bpd("teacher", "train", "--out", str(d / "teacher.npz"), "--steps", "300", "--learning-starts", "100",
            "--eval-every", "300", "--eval-episodes", "1", "--hidden", "32", "32", "--no-progress")
    run_bpd("collect", "--teacher", str(d / "teacher.npz"), "--out", str(d / "dataset.npz"), "--steps", "600",
            "--no-progress")
    run_bpd("distill", "--teacher", str(d / "teacher.npz"), "--dataset", str(d / "dataset.npz"),
            "--out", str(d / "run"), "--steps", "200", "--eval-every", "100", "--eval-episodes", "1",
            "--checkpoint-every", "50", "--hidden", "16", "16", "--critic-hidden", "32", "32", "--no-progress",
            "--kl-warmup", "none")  # a 300-step teacher's student may never imitate it: no warm-up to its cap here
    return d


@functools.cache
def pendulum_export() -> Path:
    """The committed benchmark export (generated files only) with the current kernel beside it."""
    d = Path(tempfile.mkdtemp(prefix="bpd-fixture-")) / "pendulum_export"
    shutil.copytree(ROOT / "tests" / "fixtures" / "pendulum_export", d)
    info = json.loads((d / "export.json").read_text())
    for f in ("policy.c", "policy.h"):  # the kernel joins the export's file record as `bpd export` would add it
        shutil.copyfile(ROOT / "export" / f, d / f)
        info["files"][f] = hashlib.sha256((d / f).read_bytes()).hexdigest()
    (d / "export.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    atexit.register(shutil.rmtree, d.parent, True)
    return d


# Files whose tests run whole plans or episodes (minutes each): handed out first, so that on several
# workers (make test runs pytest-xdist, --dist load) the long ones overlap instead of one ending the run alone.
LONG_FIRST = ("test_experiment.py", "test_ablations.py", "test_baselines.py", "test_pipeline.py", "test_hil.py",
              "test_pil.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FIRST)))  # stable: the order within kept
