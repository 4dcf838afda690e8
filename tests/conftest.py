import atexit
import functools
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import torch

from bpd.io import bpd_executable

ROOT = Path(__file__).resolve().parent.parent
BPD = bpd_executable()

torch.set_num_threads(1)


def run_bpd(*args: str, check: bool = True, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """Run the installed `bpd` command the way a user does."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("BPD_DEBUG", None)
    p = subprocess.run([BPD, *args], capture_output=True, text=True, timeout=timeout, env=env, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"bpd {' '.join(args)} failed ({p.returncode}):\n{p.stderr}")
    return p


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
