"""Multi-task student: the shared trunk is stored once, each task's C entry point matches its float64
network, a short training run prunes to its budget, every task's network evaluates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from export.multitask import MultiTaskExportConfig, c_name, run_multitask_export
from training.multitask import MultiTask, TaskWeights, load_multitask

REPO = Path(__file__).resolve().parents[1]


def _hand_built(rng: np.random.Generator) -> MultiTask:
    def sparse(shape, keep=0.4):
        w = rng.standard_normal(shape).astype(np.float32)
        return (w * (rng.random(shape) < keep)).astype(np.float32)

    tasks = [TaskWeights("InvertedPendulum-v5", sparse((16, 4)), rng.standard_normal(16).astype(np.float32),
                         sparse((1, 12)), np.array([0.1], np.float32), rng.standard_normal(4).astype(np.float32),
                         (0.5 + rng.random(4)).astype(np.float32), np.array([-3.0], np.float32),
                         np.array([3.0], np.float32)),
             TaskWeights("bpd/desktop-cartpole-v0", sparse((16, 9), 1.0), rng.standard_normal(16).astype(np.float32),
                         sparse((2, 12), 1.0), np.zeros(2, np.float32), np.zeros(9, np.float32),
                         np.ones(9, np.float32), np.array([-1.0, -2.0], np.float32), np.array([1.0, 0.5], np.float32))]
    return MultiTask(tasks, [sparse((12, 16), 0.2)], [rng.standard_normal(12).astype(np.float32)], "tanh")


def test_c_names():
    assert c_name("bpd/desktop-cartpole-v0") == "desktop_cartpole_v0"
    assert c_name("firmware_host.rig:bpd/desktop-cartpole-v0") == "desktop_cartpole_v0"
    assert c_name("InvertedDoublePendulum-v5") == "inverteddoublependulum_v5"


def _half_ranges(mt) -> dict:
    """Each task's half action range, at least 1: what the parity tolerance scales 1e-5 by."""
    return {t.env_id: max(1.0, float(np.max(t.action_high - t.action_low)) / 2) for t in mt.tasks}


def test_multitask_export_parity_and_shared_trunk(tmp_path):
    mt = _hand_built(np.random.default_rng(0))
    mt.save(tmp_path / "multitask.npz")
    back = load_multitask(tmp_path / "multitask.npz")
    assert back.params_nonzero == mt.params_nonzero
    r = run_multitask_export(MultiTaskExportConfig(source=str(tmp_path), out=str(tmp_path / "exp"),
                                                   parity_samples=300))
    assert set(r["tasks"]) == {"invertedpendulum_v5", "desktop_cartpole_v0"}
    half = _half_ranges(mt)
    for t in r["tasks"].values():  # small weights: float32 rounding is far below 1e-5 of the half range
        assert t["ok"] and t["max_abs_error"] < 1e-5 and t["tolerance"] == pytest.approx(1e-5 * half[t["env_id"]])
        assert 0 < t["float32_vs_float64"] < 1e-6
    c = (tmp_path / "exp" / "policy_weights.c").read_text()
    assert c.count("static const float bpd_trunk0_w[") == 1  # the trunk is stored once
    assert c.count("bpd_trunk0_w,") == 2  # and both tasks' layer tables point at it
    h = (tmp_path / "exp" / "policy_weights.h").read_text()
    assert "int bpd_desktop_cartpole_v0_run(const float *obs, float *action, float *scratch);" in h
    # the C entry point of a task equals that task's teacher-format network (its own forward pass)
    from export.multitask import MultiTaskC
    cpol = MultiTaskC(tmp_path / "exp", ["invertedpendulum_v5", "desktop_cartpole_v0"], [4, 9], [1, 2])
    obs = np.random.default_rng(1).standard_normal((50, 9)).astype(np.float32)
    for i, (name, od) in enumerate([("invertedpendulum_v5", 4), ("desktop_cartpole_v0", 9)]):
        ref = mt.task_policy(i).act(obs[:, :od])
        got = np.stack([cpol.run(name, o[:od])[1] for o in obs])
        assert np.abs(got - ref).max() < 1e-5
    rc, a = cpol.run("desktop_cartpole_v0", np.full(9, np.nan, np.float32))
    assert rc == -1 and a.tolist() == [0.0, 0.0]  # the safe action


def test_multitask_export_is_told_apart_from_a_single_policys(tmp_path):
    """export.json names its format and the trunk as --trunk gave it (16 wide into the trunk, one shared 16 -> 12
    layer: [16, 12]); the commands that take one policy's export (bench, firmware build, evaluate: verify_export)
    refuse it in one line that says what it is, not 'not a bpd export record'."""
    import json

    from bpd.errors import BpdError
    from export.verify import verify_export

    mt = _hand_built(np.random.default_rng(0))
    mt.save(tmp_path / "multitask.npz")
    run_multitask_export(MultiTaskExportConfig(source=str(tmp_path), out=str(tmp_path / "exp"), parity_samples=20))
    info = json.loads((tmp_path / "exp" / "export.json").read_text())
    assert info["format"] == "bpd-multitask-export" and info["trunk_widths"] == [16, 12]
    msg = (f"{tmp_path / 'exp'}: a multi-task export (`bpd multitask export`, one bpd_<task>_run per task); this "
           "command takes one policy's export: compile its policy.c and policy_weights.c into your firmware "
           "(export/README.md, Multi-task students)")
    with pytest.raises(BpdError) as e:
        verify_export(tmp_path / "exp")
    assert str(e.value) == msg
    del info["format"]  # one written before the record named its format
    (tmp_path / "exp" / "export.json").write_text(json.dumps(info))
    with pytest.raises(BpdError) as e:
        verify_export(tmp_path / "exp")
    assert str(e.value) == msg


def test_multitask_training_reaches_its_budget(tmp_path):
    from training.collect import CollectConfig, collect
    from training.multitask import MultiTaskConfig, train_multitask
    from training.teacher import Teacher
    rng = np.random.default_rng(0)
    ip = Teacher(weights=[rng.standard_normal((8, 4)).astype(np.float32) * 0.3,
                          rng.standard_normal((1, 8)).astype(np.float32) * 0.3],
                 biases=[np.zeros(8, np.float32), np.zeros(1, np.float32)], activation="relu", output="tanh",
                 obs_mean=np.zeros(4, np.float32), obs_std=np.ones(4, np.float32),
                 action_low=-3 * np.ones(1, np.float32), action_high=3 * np.ones(1, np.float32),
                 env_id="InvertedPendulum-v5", algo="td3")
    ip.save(tmp_path / "ip.npz")
    idp = REPO / "benchmarks" / "teachers" / "InvertedDoublePendulum-v5.npz"
    for name, t in (("ip", tmp_path / "ip.npz"), ("idp", idp)):
        collect(CollectConfig(teacher=str(t), out=str(tmp_path / f"{name}.ds.npz"), steps=200, seed=0, progress=False))
    s = train_multitask(MultiTaskConfig(teachers=[str(tmp_path / "ip.npz"), str(idp)],
                                        datasets=[str(tmp_path / "ip.ds.npz"), str(tmp_path / "idp.ds.npz")],
                                        out=str(tmp_path / "run"), trunk=[16, 16], steps=30, batch=32, eval_every=30,
                                        eval_episodes=1, nonzero=300, progress=False))
    assert s["params_nonzero"] == 300 and s["env_steps"] == 400 and s["tasks"] == ["InvertedPendulum-v5",
                                                                                    "InvertedDoublePendulum-v5"]
    mt = load_multitask(tmp_path / "run" / "multitask.npz")
    assert mt.params_nonzero == 300
    from bpd_app.evaluate import EvaluateConfig, run_evaluate
    ev = run_evaluate(EvaluateConfig(model=str(tmp_path / "run" / "task1.npz"), episodes=1))
    assert ev["env_id"] == "InvertedDoublePendulum-v5" and ev["episodes"] == 1 and ev["kind"] == "multi-task student"
    # a budget the biases (kept by the pruning) fill: refused before training, naming the budget given and the biases
    # (it trained on to the first pruning step, then named that step's target: 'a budget of 87 ... parameters')
    from bpd.errors import BpdError
    with pytest.raises(BpdError, match=r"^--nonzero 40 leaves no weights beside the 50 biases of this trunk"):
        train_multitask(MultiTaskConfig(teachers=[str(tmp_path / "ip.npz"), str(idp)],
                                        datasets=[str(tmp_path / "ip.ds.npz"), str(tmp_path / "idp.ds.npz")],
                                        out=str(tmp_path / "low"), trunk=[16, 16], steps=30, batch=32, eval_every=30,
                                        eval_episodes=1, nonzero=40, progress=False))
    assert not (tmp_path / "low").exists()


def test_multitask_parity_tolerance_follows_float32_floor(tmp_path):
    """Weights 300x larger: the float32 forward alone is off by more than 1e-5, so the tolerance is 4x
    that floor (export/parity.py), the export passes, and the C stays within it."""
    mt = _hand_built(np.random.default_rng(0))
    mt.trunk_w = [w * 300 for w in mt.trunk_w]
    mt.save(tmp_path / "multitask.npz")
    r = run_multitask_export(MultiTaskExportConfig(source=str(tmp_path), out=str(tmp_path / "exp"),
                                                   parity_samples=300))
    half = _half_ranges(mt)
    big = [t for t in r["tasks"].values() if 4 * t["float32_vs_float64"] > 1e-5 * half[t["env_id"]]]
    assert big, "the scaled network's float32 floor should set the tolerance"
    for t in r["tasks"].values():
        assert t["ok"] and t["max_abs_error"] <= t["tolerance"]
        assert t["tolerance"] == pytest.approx(max(1e-5 * half[t["env_id"]], 4 * t["float32_vs_float64"]))
