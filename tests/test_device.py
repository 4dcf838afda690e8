"""--device: auto, cpu or cuda[:N], and a one-line refusal where CUDA is asked for and absent.

The CPU is what these tests run on; where torch sees a GPU the refusals are skipped and auto must name it.
"""

import json

import pytest
import torch

from bpd.errors import BpdError
from tests.conftest import run_bpd
from training.device import resolve_device

HAS_CUDA = torch.cuda.is_available()


def test_auto_and_cpu():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if HAS_CUDA else "cpu")
    with pytest.raises(BpdError, match="expected auto, cpu, cuda or cuda:N"):
        resolve_device("gpu")


@pytest.mark.skipif(HAS_CUDA, reason="torch sees a GPU here: CUDA is not refused")
def test_cuda_without_a_gpu_is_one_line():
    with pytest.raises(BpdError, match="CUDA is not available here"):
        resolve_device("cuda:1")


def test_cuda_refused_says_why_and_how(monkeypatch):
    """A CPU build of torch (what `make` installs) is told apart from a CUDA build on a machine without a GPU: the
    first needs another torch, the second another machine."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: False)
    with pytest.raises(BpdError, match=r"built without CUDA, as `make` installs it: a GPU needs a CUDA build of the "
                       r"same torch in the venv\); use --device cpu or auto$"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: True)
    with pytest.raises(BpdError, match=r"\(torch [^,]+, no GPU found\); use --device cpu or auto$"):
        resolve_device("cuda:0")


@pytest.mark.skipif(HAS_CUDA, reason="torch sees a GPU here: CUDA is not refused")
def test_commands_refuse_cuda_before_writing_anything(tiny_pipeline, tmp_path):
    t, d = str(tiny_pipeline / "teacher.npz"), str(tiny_pipeline / "dataset.npz")
    for args, out in ((["distill", "--teacher", t, "--dataset", d, "--out", str(tmp_path / "run"), "--steps", "5"],
                       tmp_path / "run"),
                      (["teacher", "train", "--out", str(tmp_path / "t.npz"), "--steps", "300",
                        "--learning-starts", "100"],
                       tmp_path / "t.npz"),
                      (["baseline", "train", "--method", "mse", "--teacher", t, "--dataset", d, "--out",
                        str(tmp_path / "baseline"), "--steps", "5"],
                       tmp_path / "baseline")):
        p = run_bpd(*args, "--device", "cuda", check=False)
        lines = p.stderr.strip().splitlines()
        assert p.returncode not in (0, 70) and len(lines) == 1 and "CUDA is not available" in lines[0], p.stderr
        assert not out.exists()


def test_distill_records_its_device(tiny_pipeline, tmp_path):
    run_bpd("distill", "--teacher", str(tiny_pipeline / "teacher.npz"), "--dataset", str(tiny_pipeline / "dataset.npz"),
            "--out", str(tmp_path / "run"), "--steps", "20", "--eval-every", "10", "--eval-episodes", "1",
            "--hidden", "8", "8", "--critic-hidden", "16", "16", "--device", "cpu", "--no-progress")
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["device"] == "cpu"


def test_baseline_records_its_device(tiny_pipeline, tmp_path):
    for method in ("mse", "on-policy-distill"):  # offline data, and the student's own (online control)
        out = tmp_path / method
        run_bpd("baseline", "train", "--method", method, "--teacher", str(tiny_pipeline / "teacher.npz"),
                "--dataset", str(tiny_pipeline / "dataset.npz"), "--out", str(out), "--steps", "20",
                "--env-steps", "200", "--collect-every", "100", "--eval-every", "10", "--eval-episodes", "1",
                "--hidden", "8", "8", "--device", "cpu", "--no-progress")
        assert json.loads((out / "summary.json").read_text())["device"] == "cpu"
        assert (out / "policy.npz").is_file()
