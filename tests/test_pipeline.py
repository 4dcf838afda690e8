"""The whole training stage through the `bpd` command on a tiny budget, bad input, and resume."""

import json
import os
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest
import torch

from tests.conftest import BPD, run_bpd
from training.collect import load_dataset, save_dataset


def test_smoke_pipeline(tiny_pipeline):
    d = tiny_pipeline
    ds = load_dataset(d / "dataset.npz")
    assert len(ds) == 600 and ds.meta["teacher_sha256"] and ds.meta["noise"] == 0.3  # `bpd collect`'s default
    # the teacher's deterministic action is recorded next to the executed (noisy) one
    assert not np.allclose(ds.actions, ds.teacher_actions)
    assert np.abs(ds.actions - ds.teacher_actions).max() <= 0.3 * 3 * 6  # 6 sigma of noise, half-range 3
    for f in ("config.json", "metrics.csv", "checkpoint.pt", "student.pt", "training.png", "summary.json"):
        assert (d / "run" / f).is_file(), f
    rows = (d / "run" / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,") and [r.split(",")[0] for r in rows[1:]] == ["100", "200"]
    out = json.loads(run_bpd("evaluate", str(d / "run"), "--episodes", "2", "--json").stdout)
    for k in ("return_mean", "return_std", "episodes", "params_total", "params_nonzero", "sparsity"):
        assert k in out
    # 4-16-16-1: 64+16 + 256+16 + 16+1 weights and biases
    assert out["params_total"] == 369 and out["episodes"] == 2
    assert 0 <= out["params_nonzero"] <= 369
    assert out["sparsity"] == pytest.approx(1 - out["params_nonzero"] / 369)
    assert out["teacher_params_total"] == 4 * 32 + 32 + 32 * 32 + 32 + 32 + 1
    t = json.loads(run_bpd("evaluate", str(d / "teacher.npz"), "--episodes", "1", "--json").stdout)
    assert t["kind"] == "teacher" and t["sparsity"] == 0.0


def _err(p):
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bpd: error:"), p.stderr
    assert "Traceback" not in p.stderr
    return lines[0]


def test_bad_input_one_line_errors(tiny_pipeline, tmp_path):
    d = tiny_pipeline
    (tmp_path / "corrupt.npz").write_bytes(os.urandom(200))
    assert "no such file" in _err(run_bpd("collect", "--teacher", str(tmp_path / "none.npz"), check=False))
    assert "not a readable" in _err(run_bpd("collect", "--teacher", str(tmp_path / "corrupt.npz"), check=False))
    assert "unknown or unavailable environment" in _err(
        run_bpd("teacher", "train", "--env", "NoSuchEnv-v9", check=False))
    ds = load_dataset(d / "dataset.npz")
    ds.observations[5, 2] = np.nan
    save_dataset(ds, tmp_path / "nan.npz")
    assert "NaN" in _err(run_bpd("distill", "--teacher", str(d / "teacher.npz"), "--dataset",
                                 str(tmp_path / "nan.npz"), "--out", str(tmp_path / "r1"), check=False))
    ds = load_dataset(d / "dataset.npz")
    ds.meta["obs_dim"] = 3
    for k in ("observations", "next_observations"):
        setattr(ds, k, getattr(ds, k)[:, :3])
    ds.obs_mean, ds.obs_std = ds.obs_mean[:3], ds.obs_std[:3]
    save_dataset(ds, tmp_path / "dims.npz")
    assert "teacher expects 4" in _err(run_bpd("distill", "--teacher", str(d / "teacher.npz"), "--dataset",
                                               str(tmp_path / "dims.npz"), "--out", str(tmp_path / "r2"), check=False))
    # resume with a different configuration (on a copy: the tiny run is shared by the run's workers)
    shutil.copytree(d / "run", tmp_path / "run")
    assert "different configuration (hidden)" in _err(run_bpd(
        "distill", "--teacher", str(d / "teacher.npz"), "--dataset", str(d / "dataset.npz"), "--out",
        str(tmp_path / "run"), "--steps", "200", "--eval-every", "100", "--eval-episodes", "1", "--checkpoint-every",
        "50", "--hidden", "8", "--critic-hidden", "32", "32", "--kl-warmup", "none", "--resume", check=False))
    # an existing run is never overwritten silently
    assert "already holds a run" in _err(run_bpd("distill", "--teacher", str(d / "teacher.npz"), "--dataset",
                                                 str(d / "dataset.npz"), "--out", str(tmp_path / "run"), check=False))
    assert "no such file" in _err(run_bpd("evaluate", str(tmp_path / "nothing.pt"), check=False))
    assert "unknown or unavailable" in _err(run_bpd("evaluate", str(d / "teacher.npz"), "--env", "Bad-v0",
                                                    check=False))


def _distill_args(d, out, steps=600):
    return ["distill", "--teacher", str(d / "teacher.npz"), "--dataset", str(d / "dataset.npz"), "--out", str(out),
            "--steps", str(steps), "--eval-every", "300", "--eval-episodes", "1", "--checkpoint-every", "20",
            "--hidden", "16", "16", "--critic-hidden", "32", "32", "--no-progress", "--seed", "3",
            "--kl-warmup", "none"]


def test_kill9_then_resume_matches_uninterrupted_run(tiny_pipeline, tmp_path):
    """A run killed outright resumes to the uninterrupted run's student, bit for bit. Without a progress bar each run
    says it started and gives one line an evaluation (the metrics file's)."""
    d = tiny_pipeline
    lines = run_bpd(*_distill_args(d, tmp_path / "full")).stdout.splitlines()
    assert lines[0] == f"distill: InvertedPendulum-v5, 600 steps, evaluated every 300, to {tmp_path / 'full'}"
    assert [x.split(":")[0] for x in lines[1:3]] == ["step 300", "step 600"] and " nonzero, " in lines[1]
    assert lines[3].startswith("student: ")
    out = tmp_path / "killed"
    p = subprocess.Popen([BPD, *_distill_args(d, out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "checkpoint.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    p.send_signal(signal.SIGKILL)
    p.wait()
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert 0 < ck["trainer"]["step"] <= 600
    assert not (out / "student.pt").exists() or ck["trainer"]["step"] == 600
    resumed = run_bpd(*_distill_args(d, out), "--resume").stdout.splitlines()[0]
    assert resumed.startswith("distill: InvertedPendulum-v5, 600 steps, resumed at step "), resumed
    a = torch.load(tmp_path / "full" / "student.pt", weights_only=True)["state_dict"]
    b = torch.load(out / "student.pt", weights_only=True)["state_dict"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    steps = [r.split(",")[0] for r in (out / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == ["300", "600"]


def test_a_run_stopped_before_its_first_checkpoint_resumes_from_step_0_with_a_headed_metrics_file(tiny_pipeline,
                                                                                                  tmp_path):
    """Stopped before any checkpoint, a run leaves its config and a metrics file that may be empty (the header still in
    the killed process's buffer) or hold rows; --resume starts it over: the metrics file gets its header and only the
    new run's rows, so every reader of it (the plot, the stability figures) finds its steps."""
    out = tmp_path / "early"
    run_bpd(*_distill_args(tiny_pipeline, out, steps=300))
    (out / "checkpoint.pt").unlink()
    (out / "student.pt").unlink()
    (out / "metrics.csv").write_text("")
    run_bpd(*_distill_args(tiny_pipeline, out, steps=300), "--resume")
    lines = (out / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("step,") and [r.split(",")[0] for r in lines[1:]] == ["300"]
    (out / "checkpoint.pt").unlink()
    run_bpd(*_distill_args(tiny_pipeline, out, steps=300), "--resume")  # rows of a run begun over: not kept twice
    assert [r.split(",")[0] for r in (out / "metrics.csv").read_text().splitlines()[1:]] == ["300"]


def test_a_run_older_than_an_option_resumes_when_the_option_keeps_its_default(tiny_pipeline, tmp_path):
    """A run directory whose config.json predates options added since (absent there) resumes with those
    options at the values runs had before them: the paper's BPD for the fine-tune, the unit gates, the
    pair partners and the warm-up (training.distill_config.PAPER), though distill's defaults are now the
    pair-partner fine-tune after the gated warm-up; it is refused when one is set otherwise, the defaults included."""
    import json

    from bpd_app.methods import flags
    from training.distill_config import PAPER, DistillConfig

    run = tmp_path / "run"
    paper = flags(PAPER, DistillConfig)
    args = [*_distill_args(tiny_pipeline, run, steps=200), "--eval-every", "100", *paper]
    run_bpd(*args)
    cfg = json.loads((run / "config.json").read_text())
    for k in ("finetune", "unit_gates", "unit_kl", "pair_partners", "kl_warmup"):
        cfg.pop(k)
    (run / "config.json").write_text(json.dumps(cfg))
    assert run_bpd(*args, "--resume", check=False).returncode == 0
    without = [a for a in args if a not in paper]
    assert "different configuration (finetune, kl_warmup, pair_partners, unit_gates)" in _err(
        run_bpd(*without, "--resume", check=False))


def test_kl_warmup_waits_for_the_student_to_imitate(tiny_pipeline, tmp_path):
    """--kl-warmup gate: no KL until a periodic evaluation finds the student within --eta-gate of the teacher,
    then --steps of the schedule. With --eta-gate 1 any positive return releases it at the first evaluation
    (step 100): the run lasts 100 + 300 steps and records its warm-up; with --eta-gate 0 (the teacher's return
    exactly: never on this tiny student), the warm-up ends at its cap, 4 x --steps."""
    import csv

    out = tmp_path / "warm"
    run_bpd(*_distill_args(tiny_pipeline, out, steps=300), "--eval-every", "100", "--kl-warmup", "gate",
            "--eta-gate", "1")
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(float(r["step"])) for r in rows] == [100, 200, 300, 400]
    assert float(rows[0]["eta"]) == 0.0 and float(rows[1]["eta"]) > 0.0
    s = json.loads((out / "summary.json").read_text())
    assert s["kl_warmup_steps"] == 100 and s["steps"] == 400
    out = tmp_path / "capped"
    run_bpd(*_distill_args(tiny_pipeline, out, steps=50), "--eval-every", "50", "--kl-warmup", "gate",
            "--eta-gate", "0")
    s = json.loads((out / "summary.json").read_text())
    assert s["kl_warmup_steps"] == 200 and s["steps"] == 250
    out = tmp_path / "short"  # --eval-every past --steps: the warm-up is evaluated every --steps, not run to its cap
    run_bpd(*_distill_args(tiny_pipeline, out, steps=50), "--eval-every", "400", "--kl-warmup", "gate",
            "--eta-gate", "1")
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(float(r["step"])) for r in rows] == [50, 100]
    s = json.loads((out / "summary.json").read_text())
    assert s["kl_warmup_steps"] == 50 and s["steps"] == 100


def test_gated_kl_waits_for_the_first_evaluation_then_ramps(tiny_pipeline, tmp_path):
    """--eta-schedule gated: no KL before the first periodic evaluation (the gate starts shut); with
    --eta-gate 1 any positive return opens it (InvertedPendulum's returns are), so the second interval's KL
    weight is above 0; the summary records the teacher's return on the evaluation seeds, which it is
    measured against."""
    import csv

    from training.envs import evaluate, train_eval_seed
    from training.teacher import load_teacher

    out = tmp_path / "gated"
    run_bpd(*_distill_args(tiny_pipeline, out, steps=300), "--eval-every", "100",
            "--eta-schedule", "gated", "--eta-gate", "1")
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(float(r["step"])) for r in rows] == [100, 200, 300]
    assert float(rows[0]["eta"]) == 0.0 and float(rows[1]["eta"]) > 0.0
    teacher = load_teacher(tiny_pipeline / "teacher.npz")
    ref = float(np.mean(evaluate(teacher.env_id, teacher.act, 1, seed=train_eval_seed(3))[0]))
    assert json.loads((out / "summary.json").read_text())["eta_gate_teacher_return"] == pytest.approx(ref)
