"""What a new user meets walking the training commands: interrupting and resuming them."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from bpd.errors import BpdError


def _rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if k != "time_s"} for r in csv.DictReader(f)]


def test_a_distillation_stopped_between_evaluations_and_resumed_writes_the_same_metrics(tiny_pipeline, tmp_path,
                                                                                          monkeypatch):
    """Stopped at step 170 (last checkpoint 150, evaluations every 100), the resumed run's row at step 200
    averages the losses of steps 101-200, as the uninterrupted run's does: the checkpoint carries the metrics
    accumulated since the last evaluation (it averaged steps 151-200 alone, so that row's losses, eta and lambda
    differed). Every row but the wall time, and the student handed over, are the same."""
    from training.distill import BPDTrainer, DistillConfig, distill

    def cfg(out, resume=False):
        return DistillConfig(teacher=str(tiny_pipeline / "teacher.npz"), dataset=str(tiny_pipeline / "dataset.npz"),
                             out=str(tmp_path / out), steps=300, eval_every=100, eval_episodes=1, select_episodes=1,
                             checkpoint_every=50, hidden=[8, 8], critic_hidden=[16, 16], batch=32,
                             kl_warmup="none", progress=False, resume=resume)

    distill(cfg("whole"))
    update = BPDTrainer.update

    def stop_at_170(self, batch):
        if self.step == 170:
            raise KeyboardInterrupt
        return update(self, batch)

    monkeypatch.setattr(BPDTrainer, "update", stop_at_170)
    with pytest.raises(KeyboardInterrupt):
        distill(cfg("cut"))
    assert [r["step"] for r in _rows(tmp_path / "cut" / "metrics.csv")] == ["100"]
    monkeypatch.setattr(BPDTrainer, "update", update)
    distill(cfg("cut", resume=True))
    whole, cut = _rows(tmp_path / "whole" / "metrics.csv"), _rows(tmp_path / "cut" / "metrics.csv")
    assert [r["step"] for r in cut] == ["100", "200", "300"]
    assert cut == whole
    a = torch.load(tmp_path / "whole" / "student.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "student.pt", weights_only=True)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


def test_a_checkpoint_written_before_the_metrics_were_kept_resumes_and_a_garbled_one_is_refused(tmp_path):
    """Checkpoints without the accumulated metrics (written before they were kept) resume with none; a
    checkpoint whose accumulated metrics are not lists of numbers is refused in one line."""
    from training.checkpoint import restored_acc

    assert restored_acc({"format": "bpd-checkpoint"}, tmp_path / "c.pt") == {}
    assert restored_acc({"acc": {"losses/bc": [1.0, 2]}}, tmp_path / "c.pt") == {"losses/bc": [1.0, 2.0]}
    with pytest.raises(BpdError, match="corrupt checkpoint"):
        restored_acc({"acc": {"losses/bc": ["x"]}}, tmp_path / "c.pt")
    with pytest.raises(BpdError, match="corrupt checkpoint"):
        restored_acc({"acc": [1, 2]}, tmp_path / "c.pt")


def _base_cfg(tiny, out, **kw):
    from training.baseline_rules import BaselineConfig

    base: dict[str, Any] = {"method": "kl", "teacher": str(tiny / "teacher.npz"), "dataset": str(tiny / "dataset.npz"),
                            "out": str(out), "hidden": [8, 8], "steps": 40, "eval_every": 20, "eval_episodes": 1,
                            "checkpoint_every": 10, "batch": 16, "progress": False}
    return BaselineConfig(**(base | kw))


@pytest.mark.parametrize("which", ["one", "below", "over"])
def test_a_baseline_nonzero_budget_the_network_cannot_hold_is_refused_before_the_run_directory(tiny_pipeline,
                                                                                              tmp_path, which):
    """--hidden 8 8 on the tiny teacher's task (obs O, act A): a collapsed student keeps at least one weight a layer
    on one path, those two hidden units' biases and the A output biases (3 + 2 + A), and at most every weight and
    bias of the network; a budget outside that cannot be met. The refusal used to come at the first pruning step (or
    after config.json was written): the run directory was left behind, and the corrected command then met 'already
    holds a run'. A budget inside it ships at most that many parameters of the collapsed student."""
    from training.baselines import train_baseline
    from training.teacher import load_teacher

    t = load_teacher(tiny_pipeline / "teacher.npz")
    least = 3 + 2 + t.act_dim
    dense = 16 + t.act_dim + t.obs_dim * 8 + 8 * 8 + 8 * t.act_dim
    below = f"is below {least}, the fewest parameters a collapsed student of --hidden 8 8 keeps"
    nonzero, message = {"one": (1, f"--nonzero 1 {below}"), "below": (least - 1, f"--nonzero {least - 1} {below}"),
                        "over": (dense + 1, f"--nonzero {dense + 1} exceeds the {dense} parameters of --hidden 8 8")
                        }[which]
    with pytest.raises(BpdError, match=message):
        train_baseline(_base_cfg(tiny_pipeline, tmp_path / "b", nonzero=nonzero))
    assert not (tmp_path / "b").exists()
    budget = 18 + t.act_dim
    assert least <= train_baseline(_base_cfg(tiny_pipeline, tmp_path / "b", nonzero=budget))["params_nonzero"] <= budget


def test_a_baseline_resumed_after_its_end_from_a_moved_directory_reports_its_return(tiny_pipeline, tmp_path,
                                                                                     monkeypatch):
    """A finished run moved elsewhere and resumed (as after a kill during its last write): it used to be refused
    ('different configuration (out)'), and where it was not, it crashed printing a return of None and wrote
    null into summary.json. Stopped between evaluations, the resumed run's metrics are an uninterrupted run's."""
    from training.baseline_trainer import BaselineTrainer
    from training.baselines import train_baseline

    whole = train_baseline(_base_cfg(tiny_pipeline, tmp_path / "whole"))
    update = BaselineTrainer.update

    def stop_at_35(self, batch, segment=None):
        if self.step == 35:
            raise KeyboardInterrupt
        return update(self, batch, segment)

    monkeypatch.setattr(BaselineTrainer, "update", stop_at_35)
    with pytest.raises(KeyboardInterrupt):
        train_baseline(_base_cfg(tiny_pipeline, tmp_path / "cut"))
    monkeypatch.setattr(BaselineTrainer, "update", update)
    (tmp_path / "cut").rename(tmp_path / "moved")
    monkeypatch.chdir(tmp_path)
    cut = train_baseline(_base_cfg(tiny_pipeline, "./moved", resume=True))
    assert _rows(tmp_path / "moved" / "metrics.csv") == _rows(tmp_path / "whole" / "metrics.csv")
    assert cut["final_eval_return_mean"] == whole["final_eval_return_mean"] is not None
    again = train_baseline(_base_cfg(tiny_pipeline, "moved", resume=True))
    assert again["final_eval_return_mean"] == whole["final_eval_return_mean"]
    assert again["grad_steps"] == 40
    with pytest.raises(BpdError, match=r"different configuration \(lr\)"):
        train_baseline(_base_cfg(tiny_pipeline, "moved", resume=True, lr=0.5))
    (tmp_path / "moved" / "checkpoint.pt").write_text("junk")
    with pytest.raises(BpdError, match="moved/checkpoint.pt: unreadable checkpoint"):
        train_baseline(_base_cfg(tiny_pipeline, "moved", resume=True))
    torch.save({"trainer": {}}, tmp_path / "moved" / "checkpoint.pt")
    with pytest.raises(BpdError, match="does not match this run"):
        train_baseline(_base_cfg(tiny_pipeline, "moved", resume=True))


def test_a_multitask_run_resumes_under_other_spellings_of_its_paths_and_reports_its_returns(tiny_pipeline,
                                                                                           tmp_path, monkeypatch):
    """`--out ./m` for m and ./teacher.npz for teacher.npz resume (they were refused: 'a different
    configuration', naming nothing); a changed option is named; a finished run resumed reports its last
    returns again (summary.json's final_eval was overwritten with nulls); a garbled checkpoint is one line,
    not an internal error."""
    import shutil

    from training.collect import CollectConfig, collect
    from training.multitask import MultiTaskConfig, train_multitask

    monkeypatch.chdir(tmp_path)
    shutil.copy(tiny_pipeline / "teacher.npz", "t.npz")
    shutil.copy(tiny_pipeline / "dataset.npz", "d.npz")
    idp = Path(__file__).resolve().parents[1] / "benchmarks" / "teachers" / "InvertedDoublePendulum-v5.npz"
    collect(CollectConfig(teacher=str(idp), out="idp.npz", steps=100, seed=0, progress=False))

    def cfg(out, t="t.npz", **kw):
        return MultiTaskConfig(**({"teachers": [t, str(idp)], "datasets": ["d.npz", "idp.npz"], "out": out,
                                   "trunk": [8], "steps": 20, "batch": 8, "eval_every": 10, "eval_episodes": 1,
                                   "progress": False} | kw))

    first = train_multitask(cfg("m"))
    assert None not in first["final_eval"].values()
    again = train_multitask(cfg("./m", t="./t.npz", resume=True))
    assert again["final_eval"] == first["final_eval"] and again["steps"] == 20
    assert read_summary(tmp_path / "m")["final_eval"] == first["final_eval"]
    with pytest.raises(BpdError, match=r"different configuration \(lr, trunk\)"):
        train_multitask(cfg("m", resume=True, lr=0.5, trunk=[4]))
    (tmp_path / "m" / "checkpoint.pt").write_text("junk")
    with pytest.raises(BpdError, match="m/checkpoint.pt: unreadable checkpoint"):
        train_multitask(cfg("m", resume=True))
    torch.save({"student": {}}, tmp_path / "m" / "checkpoint.pt")
    with pytest.raises(BpdError, match="does not match this run"):
        train_multitask(cfg("m", resume=True))


def read_summary(run) -> dict:
    import json

    return json.loads((run / "summary.json").read_text())


def test_evaluate_takes_a_baseline_run_directory_and_points_a_multitask_run_to_its_tasks(tiny_pipeline, tmp_path):
    """`bpd evaluate RUN` for a baseline run evaluates its policy.npz (it answered 'not a run directory'), with
    the same returns as the file itself; a multi-task run directory or its multitask.npz names the per-task
    networks to evaluate instead of 'expected bpd-teacher'."""
    from bpd.io import save_arrays
    from bpd_app.evaluate import EvaluateConfig, run_evaluate
    from training.baselines import train_baseline

    train_baseline(_base_cfg(tiny_pipeline, tmp_path / "b", steps=10, eval_every=10))
    by_dir = run_evaluate(EvaluateConfig(model=str(tmp_path / "b"), episodes=2))
    by_file = run_evaluate(EvaluateConfig(model=str(tmp_path / "b" / "policy.npz"), episodes=2))
    assert by_dir["returns"] == by_file["returns"] and by_dir["algo"] == "distilled kl"
    assert by_dir["params_total"] == by_file["params_total"] > 0
    m = tmp_path / "m"
    m.mkdir()
    save_arrays(m / "multitask.npz", {"format": "bpd-multitask"}, {"x": np.zeros(1)})
    for i in (0, 1):
        (m / f"task{i}.npz").write_bytes(b"")
    with pytest.raises(BpdError, match=r"multi-task run; evaluate one task's network \(.*m/task0.npz .*m/task1.npz\)"):
        run_evaluate(EvaluateConfig(model=str(m), episodes=1))
    with pytest.raises(BpdError, match="multitask.npz: a multi-task student; evaluate one task's network"):
        run_evaluate(EvaluateConfig(model=str(m / "multitask.npz"), episodes=1))


def test_evaluate_refuses_variation_episodes_without_robustness(tiny_pipeline):
    """--variation-episodes without --robustness was ignored (while --out without it is refused)."""
    from bpd_app.evaluate import EvaluateConfig, run_evaluate

    with pytest.raises(BpdError, match="--variation-episodes is for --robustness"):
        run_evaluate(EvaluateConfig(model=str(tiny_pipeline / "teacher.npz"), variation_episodes=5))


def test_evaluate_refuses_episodes_with_robustness(tiny_pipeline):
    """--robustness runs --variation-episodes per variation; an --episodes given with it was silently ignored."""
    from bpd_app.evaluate import EvaluateConfig, run_evaluate

    with pytest.raises(BpdError, match="--robustness runs --variation-episodes episodes per variation"):
        run_evaluate(EvaluateConfig(model=str(tiny_pipeline / "teacher.npz"), robustness=True, episodes=3))
    with pytest.raises(BpdError, match="--robustness runs --variation-episodes episodes per variation"):
        run_evaluate(EvaluateConfig(model=str(tiny_pipeline / "teacher.npz"), robustness=True, episodes=10))  # default
    with pytest.raises(BpdError, match="--variation-episodes is for --robustness"):
        run_evaluate(EvaluateConfig(model=str(tiny_pipeline / "teacher.npz"), variation_episodes=3))  # its default


def test_an_interrupted_training_says_how_to_resume_once_it_has_a_checkpoint(tmp_path):
    """Ctrl-C printed 'bpd: interrupted' alone; with a checkpoint kept, the note bpd_app/cli.py prints after it
    names the directory and --resume. Before the first checkpoint there is nothing to resume: no note."""
    from training.cli import resumable

    def stop():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as e:
        resumable(stop, tmp_path / "run" / "checkpoint.pt")
    assert not hasattr(e.value, "bpd_note")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"x")
    with pytest.raises(KeyboardInterrupt) as e:
        resumable(stop, tmp_path / "run" / "checkpoint.pt")
    assert e.value.bpd_note == (f"checkpoint kept in {tmp_path / 'run'}; "  # type: ignore[attr-defined]
                                "the same command with --resume continues from it")
    assert resumable(lambda: 7, tmp_path / "none") == 7
    with pytest.raises(KeyboardInterrupt) as e:  # `bpd teacher train` (first checkpoint 10000 steps in) says so
        resumable(stop, tmp_path / "none" / "checkpoint.pt", "at step 10000, --checkpoint-every")
    assert e.value.bpd_note == ("stopped before the first checkpoint (at step 10000, "  # type: ignore[attr-defined]
                                "--checkpoint-every): nothing kept")


def test_teacher_train_stopped_before_its_first_checkpoint_says_nothing_was_kept(tmp_path, monkeypatch, capsys):
    """Ctrl-C in a teacher training before its first checkpoint printed 'bpd: interrupted' alone, though minutes of
    training (10000 steps by default) were lost: it now says when the first checkpoint would have come."""
    import training.teacher as tt
    from bpd_app.cli import main

    def stop(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(tt, "evaluate", stop)  # the first evaluation, at step 150: before the checkpoint at 300
    rc = main(["teacher", "train", "--out", str(tmp_path / "t.npz"), "--steps", "300", "--learning-starts", "100",
               "--eval-every", "150", "--checkpoint-every", "300", "--hidden", "8", "8", "--no-progress"])
    assert rc == 130 and capsys.readouterr().err.strip().splitlines()[-1] == (
        "bpd: interrupted: stopped before the first checkpoint (at step 300, --checkpoint-every): nothing kept")
    assert not (tmp_path / "t.npz.work").exists() and not (tmp_path / "t.npz").exists()
