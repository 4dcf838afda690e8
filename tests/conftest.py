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


def pytest_configure(config):
    """One build cache (bpd/cache.py) for the whole run, its workers and the `bpd` they start, begun empty: every
    build a test asks for is made once in the run, and never read from a cache of an earlier one (BPD_CACHE_DIR=off
    runs the suite without one)."""
    if not os.environ.get("PYTEST_XDIST_WORKER") and os.environ.get("BPD_CACHE_DIR") != "off":  # workers inherit it
        d = tempfile.mkdtemp(prefix="bpd-test-cache-")
        os.environ["BPD_CACHE_DIR"] = d
        config._bpd_cache = d


def pytest_unconfigure(config):
    if getattr(config, "_bpd_cache", None):
        shutil.rmtree(config._bpd_cache, ignore_errors=True)


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
    """A teacher, dataset and student made on a tiny budget (seconds), shared by tests: made once in a run, by the
    first worker to need it, in the run's cache directory (pytest_configure), the others waiting on its lock."""
    import fcntl

    root = os.environ.get("BPD_CACHE_DIR")
    if not root or root == "off":
        return _make_tiny(tmp_path_factory.mktemp("tiny"))
    d = Path(root) / "tests" / "tiny"
    d.parent.mkdir(parents=True, exist_ok=True)
    with open(d.parent / "tiny.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not (d / "made").is_file():
            shutil.rmtree(d, ignore_errors=True)  # a worker stopped half way: made again
            _make_tiny(d)
            (d / "made").write_text("")
    return d


def _make_tiny(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    run_bpd("teacher", "train", "--out", str(d / "teacher.npz"), "--steps", "300", "--learning-starts", "100",
            "--eval-every", "300", "--eval-episodes", "1", "--hidden", "32", "32", "--no-progress")
    run_bpd("collect", "--teacher", str(d / "teacher.npz"), "--out", str(d / "dataset.npz"), "--steps", "600",
            "--seed", "0", "--no-progress")  # the data the tests' expectations of this tiny student were made on
    run_bpd("distill", "--teacher", str(d / "teacher.npz"), "--dataset", str(d / "dataset.npz"),
            "--out", str(d / "run"), "--steps", "200", "--eval-every", "100", "--eval-episodes", "1",
            "--checkpoint-every", "50", "--hidden", "16", "16", "--critic-hidden", "32", "32", "--no-progress",
            "--kl-warmup", "none")  # a 300-step teacher's student may never imitate it: no warm-up to its cap here
    return d


def edit_nested(raw: dict, changes: dict, remove: object) -> dict:
    """raw (a parsed YAML) with changes applied in place: key to a value, a__b for a nested key; the value remove
    deletes the key."""
    for k, v in changes.items():
        *path, last = k.split("__")
        node = raw
        for part in path:
            node = node[part]
        if v is remove:
            del node[last]
        else:
            node[last] = v
    return raw


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



def nan_action_export(tmp: Path) -> Path:
    """The fixture export (pendulum_export) with the output layer's bias NaN: its kernel returns success with a NaN
    action for every observation (the output clamp lets a NaN through). Without its stored self-test, which that
    action would fail: the device runs it, as an export older than the self-test."""
    import re

    import numpy as np

    from export.c_export import CPolicy

    d = tmp / "nan_action"
    shutil.copytree(pendulum_export(), d)
    (d / "policy_selftest.h").unlink()
    w = d / "policy_weights.c"
    text = w.read_text()
    last = max(int(n) for n in re.findall(r"bpd_l(\d+)_b\[", text))
    m = re.search(rf"bpd_l{last}_b\[\d+\] = \{{\s*(-?[0-9.e+-]+f)", text)
    w.write_text(text[:m.start(1)] + "(0.0f / 0.0f)" + text[m.end(1):])
    rc, action = CPolicy(d).run(np.zeros(4, np.float32))
    assert rc == 0 and np.isnan(action).all()  # success, with a NaN: what the device must not take as an action
    return d


# The tests of half a minute or more on four workers (a timeline of the whole suite, tests/timeline.py, stop 71),
# longest first, then the files whose tests run whole plans or episodes: handed out first, so that on several
# workers (make test runs pytest-xdist, --dist load, one at a time) the long ones overlap instead of one ending the
# run alone. A name missing here costs time, not correctness.
LONG_TESTS = ("test_every_ablation_trains_evaluates_and_tabulates_through_the_runner",
              "test_baselines_run_through_the_grid_runner", "test_plan_runs_skips_finished_cells_and_records_failures",
              "test_a_lost_run_root_is_restored_from_the_committed_summaries",
              "test_an_online_sac_cell_records_its_budget_and_curve_and_is_plotted_against_environment_steps",
              "test_distill_cuts_to_the_cycles_asked", "test_export_cli_generated_and_int",
              "test_default_export_ships_the_integer_kernel_where_it_wins_and_keeps_the_return",
              "test_a_run_stopped_before_its_first_checkpoint_resumes_from_step_0_with_a_headed_metrics_file",
              "test_kill9_then_resume_matches_uninterrupted_run", "test_bad_input_one_line_errors",
              "test_plan_through_ray",
              "test_export_takes_a_minari_dataset_and_a_run_whose_minari_dataset_is_gone", "test_live_view_in_chromium",
              "test_rig_sim_view_in_chromium", "test_a_run_with_visits_resumes_after_kill9_to_the_same_student",
              "test_compress_orders_the_reference_run_first_and_sizes_the_cut_against_it",
              "test_distill_from_minari_gives_the_students_of_the_npz",
              "test_kl_warmup_waits_for_the_student_to_imitate",
              "test_export_cli_end_to_end", "test_auto_holds_the_integer_forms_to_the_int_flash_ratio",
              "test_a_run_older_than_an_option_resumes_when_the_option_keeps_its_default",
              "test_int_kernel_too_wide_for_the_dsp_offsets_is_scalar_on_cortex_m4f",
              "test_compress_hands_over_the_cheapest_student_that_keeps_the_return")
LONG_FIRST = ("test_experiment.py", "test_ablations.py", "test_baselines.py", "test_pipeline.py", "test_hil.py",
              "test_pil.py", "test_conformance.py")


def _long_order(workers: int) -> list[str]:
    """LONG_TESTS in the order handed out: xdist's first hand-out gives each worker two consecutive tests, so the
    2N longest go in pairs, the k-th longest with the (2N - 1 - k)-th, each worker starting on one of the N longest."""
    top, rest = LONG_TESTS[:2 * workers], LONG_TESTS[2 * workers:]
    paired = [name for k in range(len(top) // 2) for name in (top[k], top[len(top) - 1 - k])]
    return paired + list(top[len(top) // 2:len(top) - len(top) // 2]) + list(rest)


def pytest_collection_modifyitems(config, items):
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))  # the same in every worker: one order
    test_rank = {name: i for i, name in enumerate(_long_order(workers))}
    file_rank = {name: len(LONG_TESTS) + i for i, name in enumerate(LONG_FIRST)}
    last = len(LONG_TESTS) + len(LONG_FIRST)
    items.sort(key=lambda item: test_rank.get(getattr(item, "originalname", item.name),
                                              file_rank.get(item.path.name, last)))  # stable: the order within kept
