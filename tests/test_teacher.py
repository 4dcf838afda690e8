"""Teacher format, the numpy forward pass, and safe import of stable-baselines3 models."""

import gymnasium as gym
import numpy as np
import pytest

from bpd.errors import BpdError
from bpd.io import load_arrays, save_arrays
from training.mlp import MLPPolicy
from training.teacher import Teacher, TeacherImportConfig, import_sb3, load_teacher


def hand_teacher(output="tanh") -> Teacher:
    # obs 2 -> hidden 2 (relu) -> 1; normalisation mean [1, 0], std [2, 1]; bounds [-3, 3]
    return Teacher(weights=[np.array([[1.0, 0.0], [0.0, -1.0]], np.float32), np.array([[0.5, 2.0]], np.float32)],
                   biases=[np.array([0.0, 1.0], np.float32), np.array([0.25], np.float32)],
                   activation="relu", output=output, obs_mean=np.array([1.0, 0.0], np.float32),
                   obs_std=np.array([2.0, 1.0], np.float32), action_low=np.array([-3.0], np.float32),
                   action_high=np.array([3.0], np.float32), env_id="InvertedPendulum-v5", algo="hand")


def test_hand_built_forward():
    t = hand_teacher()
    # obs [5, 0.5] -> norm [2, 0.5] -> hidden relu([2, 0.5]) = [2, 0.5] -> y = 1 + 1 + 0.25 = 2.25
    y = 2.25
    assert t.act(np.array([5.0, 0.5]))[0] == pytest.approx(-3 + (np.tanh(y) + 1) * 3, rel=1e-6)
    tc = hand_teacher("clip")
    assert tc.act(np.array([5.0, 0.5]))[0] == pytest.approx(2.25, rel=1e-6)
    # obs [1, 2] -> norm [0, 2] -> relu([0, -1]) = [0, 0] -> y = 0.25; batch form agrees
    batch = tc.act(np.array([[5.0, 0.5], [1.0, 2.0]]))
    np.testing.assert_allclose(batch[:, 0], [2.25, 0.25], rtol=1e-6)
    assert t.params_total == 4 + 2 + 2 + 1 and isinstance(t, MLPPolicy)


def test_save_load_roundtrip(tmp_path):
    t = hand_teacher()
    t.save(tmp_path / "t.npz")
    u = load_teacher(tmp_path / "t.npz")
    obs = np.random.default_rng(0).normal(size=(50, 2))
    np.testing.assert_array_equal(t.act(obs), u.act(obs))
    assert (u.env_id, u.algo, u.hidden) == ("InvertedPendulum-v5", "hand", [2])


def test_corrupt_and_wrong_files(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(BpdError, match="not a readable bpd-teacher"):
        load_teacher(tmp_path / "junk.npz")
    with pytest.raises(BpdError, match="no such file"):
        load_teacher(tmp_path / "missing.npz")
    np.savez(tmp_path / "plain.npz", a=np.zeros(3))
    with pytest.raises(BpdError, match="no metadata"):
        load_teacher(tmp_path / "plain.npz")
    t = hand_teacher()
    t.save(tmp_path / "ok.npz")
    meta, arrays = load_arrays(tmp_path / "ok.npz", "bpd-teacher")
    arrays["W0"][0, 0] = np.nan  # written by something else: Teacher.save itself refuses NaN
    save_arrays(tmp_path / "nan.npz", meta, arrays)
    with pytest.raises(BpdError, match="NaN"):
        load_teacher(tmp_path / "nan.npz")
    t.weights[0][0, 0] = np.nan
    with pytest.raises(BpdError, match="NaN"):
        t.save(tmp_path / "never.npz")
    assert not (tmp_path / "never.npz").exists()


@pytest.mark.parametrize("algo", ["SAC", "TD3", "PPO"])
def test_import_sb3_matches_predict(tmp_path, algo):
    import gymnasium as gym
    import stable_baselines3 as sb3

    env = gym.make("InvertedPendulum-v5")
    model = getattr(sb3, algo)("MlpPolicy", env, seed=1, policy_kwargs=dict(net_arch=[32, 16]), device="cpu")
    model.save(tmp_path / "m.zip")
    t = import_sb3(TeacherImportConfig(sb3_zip=str(tmp_path / "m.zip"), env="InvertedPendulum-v5"))
    assert t.algo == algo.lower() and t.hidden == [32, 16]
    obs = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    expected, _ = model.predict(obs, deterministic=True)
    np.testing.assert_allclose(t.act(obs), expected, atol=1e-5)


def test_import_rejects_garbage(tmp_path):
    (tmp_path / "x.zip").write_bytes(b"nope")
    with pytest.raises(BpdError, match="not a readable stable-baselines3"):
        import_sb3(TeacherImportConfig(sb3_zip=str(tmp_path / "x.zip"), env="InvertedPendulum-v5"))


class _Counter(gym.Env):
    """A hand-built env: reward i at tick i, terminated at tick 7; the observation is the tick."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self) -> None:
        self.t, self.actions = 0, []

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        self.actions.append(float(action[0]))
        return np.array([self.t], np.float32), float(self.t), self.t >= 7, False, {}


def test_action_repeat_holds_sums_and_stops_at_the_end():
    from training.envs import ActionRepeat

    inner = _Counter()
    env = ActionRepeat(inner, 3)
    env.reset()
    obs, r, term, trunc, _ = env.step(np.array([0.5], np.float32))
    assert obs[0] == 3 and r == 1 + 2 + 3 and not term
    obs, r, term, _, _ = env.step(np.array([-0.25], np.float32))
    assert obs[0] == 6 and r == 4 + 5 + 6 and not term
    obs, r, term, _, _ = env.step(np.array([1.0], np.float32))  # the episode ends after one of three ticks
    assert obs[0] == 7 and r == 7 and term
    assert inner.actions == [0.5] * 3 + [-0.25] * 3 + [1.0]


def test_action_repeat_training_records_it(tmp_path):
    """A tiny training with --action-repeat 2 runs, counts decisions in --steps and records the option."""
    from tests.conftest import run_bpd

    run_bpd("teacher", "train", "--out", str(tmp_path / "t.npz"), "--steps", "300", "--learning-starts", "100",
            "--eval-every", "300", "--eval-episodes", "1", "--final-episodes", "2", "--hidden", "16", "16",
            "--action-repeat", "2", "--no-progress")
    t = load_teacher(tmp_path / "t.npz")
    assert t.train["config"]["action_repeat"] == 2 and t.train["steps"] == 300


def test_a_resumed_training_may_change_its_step_budget_and_nothing_else(tmp_path):
    import json

    from training.teacher import TeacherTrainConfig, _TeacherWork

    cfg = TeacherTrainConfig(out=str(tmp_path / "t.npz"), work_dir=str(tmp_path / "w"), steps=1000)
    work = _TeacherWork(cfg)
    assert work.prepare(cfg) is False  # started (resuming nothing is an error)
    raised = TeacherTrainConfig(out=cfg.out, work_dir=cfg.work_dir, steps=5000, resume=True)
    assert _TeacherWork(raised).prepare(raised) is False
    assert json.loads(work.config.read_text())["steps"] == 5000   # the budget it now trains to
    other = TeacherTrainConfig(out=cfg.out, work_dir=cfg.work_dir, steps=5000, seed=1, resume=True)
    with pytest.raises(BpdError, match=r"different configuration \(seed\)"):
        _TeacherWork(other).prepare(other)


def test_distill_discounts_over_the_teachers_own_horizon(tiny_pipeline):
    """`bpd distill`'s default discount per tick keeps the teacher's horizon: gamma^(1/action_repeat) from the
    teacher's training record (0.99 per decision held 5 ticks: 0.99^(1/5) = 0.997992, the rotary pendulum's
    teacher), 0.99 for a teacher without one (an import); the run records the value it used."""
    import json

    from training.teacher import DEFAULT_GAMMA, teacher_gamma

    t = hand_teacher()
    assert teacher_gamma(t)[0] == DEFAULT_GAMMA == 0.99
    t.train = {"config": {"gamma": 0.99, "action_repeat": 5}}
    assert teacher_gamma(t)[0] == pytest.approx(0.997992, abs=5e-7)
    t.train = {"config": {"gamma": 0.9, "action_repeat": 1}}
    assert teacher_gamma(t)[0] == pytest.approx(0.9)
    t.train = {"config": {"gamma": "x"}}  # a malformed record: the plain default
    assert teacher_gamma(t)[0] == DEFAULT_GAMMA
    tt = load_teacher(tiny_pipeline / "teacher.npz")
    run = json.loads((tiny_pipeline / "run" / "config.json").read_text())
    assert run["gamma"] == pytest.approx(teacher_gamma(tt)[0], abs=1e-6)


def test_a_training_shorter_than_eval_every_evaluates_its_last_step(tmp_path):
    """--steps 200 under the default --eval-every 2500: the actor is evaluated at step 200, the one evaluation; the
    teacher written is that actor (its return on the training evaluation's seed is the recorded one), and the
    command says so: a line at the start, one at the evaluation, the summary with a finite best return."""
    import json

    from tests.conftest import run_bpd
    from training.envs import evaluate
    from training.teacher import FINAL_EVAL_SEED, TRAIN_EVAL_SEED

    p = run_bpd("teacher", "train", "--out", str(tmp_path / "t.npz"), "--steps", "200", "--learning-starts", "100",
                "--eval-episodes", "1", "--final-episodes", "1", "--hidden", "16", "16", "--no-progress")
    t = load_teacher(tmp_path / "t.npz")
    ret = t.train["best_train_return"]
    assert t.train["best_step"] == 200 and [h["step"] for h in t.train["history"]] == [200]
    assert np.isfinite(ret) and ret == t.train["history"][0]["return_mean"]
    assert evaluate("InvertedPendulum-v5", t.act, 1, seed=TRAIN_EVAL_SEED)[0] == [pytest.approx(ret)]
    json.dumps(t.train, allow_nan=False)  # no -Infinity or NaN in the record
    lines = p.stdout.splitlines()
    assert lines[0].startswith("teacher train: sac on InvertedPendulum-v5, 200 steps")
    assert lines[1].startswith(f"step 200: return {ret:.1f} +- 0.0, worst {ret:.1f} (best {ret:.1f} at step 200)")
    assert lines[-1].startswith(f"teacher: {tmp_path / 't.npz'}  best return {ret:.1f} at step 200 ")
    # the best return chose the teacher; the last line gives it on the held-out check too, with its spread
    f = t.train["final"]
    assert f["seeds"] == [FINAL_EVAL_SEED, FINAL_EVAL_SEED] and t.train["history"][0]["return_std"] == 0.0
    assert lines[-1].endswith(f"; on 1 held-out episode (seeds {FINAL_EVAL_SEED}..{FINAL_EVAL_SEED}) "
                              f"{f['return_mean']:.1f} +- 0.0, worst {f['return_min']:.1f}")



def test_a_training_with_an_evaluation_keeps_its_schedule(tmp_path):
    """300 steps evaluated every 200: the one evaluation at 200 and none added at 300 (a training that evaluated
    keeps the teacher the schedule gives, as committed cells such as online-sac-small were trained)."""
    import training.teacher as tt

    s = tt.train_teacher(tt.TeacherTrainConfig(out=str(tmp_path / "t.npz"), steps=300, learning_starts=100,
                                               eval_every=200, eval_episodes=1, final_episodes=1, hidden=[16, 16],
                                               progress=False))
    assert [h["step"] for h in s["history"]] == [200] and s["best_step"] == 200


def test_a_resumed_training_evaluates_its_last_step(tmp_path, monkeypatch):
    """Interrupted after its checkpoint at step 150 and before any evaluation (the checkpoint holds no -Infinity),
    resumed to 200 steps: evaluated at step 200, whose actor is the teacher written."""
    import json

    import torch

    import training.teacher as tt

    class Stop(Exception):
        pass

    def interrupted(*a, **k):
        raise Stop

    cfg = tt.TeacherTrainConfig(out=str(tmp_path / "t.npz"), steps=150, learning_starts=100, checkpoint_every=150,
                                eval_episodes=1, final_episodes=1, hidden=[16, 16], progress=False)
    monkeypatch.setattr(tt, "evaluate", interrupted)  # the evaluation at the last step: killed there
    with pytest.raises(Stop):
        tt.train_teacher(cfg)
    monkeypatch.undo()
    ck = torch.load(tmp_path / "t.npz.work" / "checkpoint.pt", weights_only=True)
    assert ck["num_timesteps"] == 150 and json.loads(ck["best"])["return"] is None and "Infinity" not in ck["best"]
    lines: list[str] = []
    cfg.steps, cfg.resume = 200, True
    s = tt.train_teacher(cfg, log=lines.append)
    assert s["resumed"] and s["best_step"] == 200 and [h["step"] for h in s["history"]] == [200]
    assert np.isfinite(s["best_return"]) and s["best_return"] == s["history"][0]["return_mean"]
    json.dumps(s, allow_nan=False)
    assert lines[0].startswith("teacher train: sac on InvertedPendulum-v5, resumed at step 150 of 200")
    assert len(lines) == 2 and lines[1].startswith(f"step 200: return {s['best_return']:.1f}")
    t = load_teacher(tmp_path / "t.npz")
    assert tt.evaluate("InvertedPendulum-v5", t.act, 1, seed=tt.TRAIN_EVAL_SEED)[0] == [pytest.approx(s["best_return"])]


def test_a_stop_while_a_checkpoint_is_saved_leaves_the_previous_one_resumable(tmp_path, monkeypatch):
    """Stopped after the replay buffer and the new best actor were written and before the checkpoint naming them
    (Ctrl-C, kill -9): the previous checkpoint is resumed with its own replay buffer and best actor. Before, the
    replay buffer had one fixed name, so the resume refused ('replay.npz: does not belong to the checkpoint'): the
    training was lost; and best.npz held the newer evaluation's actor, resumed under the older one's return."""
    import json
    import shutil

    import torch

    import training.teacher as tt
    import training.teacher_checkpoint as tc

    cfg = tt.TeacherTrainConfig(out=str(tmp_path / "t.npz"), steps=300, learning_starts=100, checkpoint_every=100,
                                eval_every=100, eval_episodes=1, final_episodes=1, hidden=[16, 16], progress=False)
    write, saves = tc.atomic_write, []

    def stopped_at_the_third(path, *a, **k):
        if path.name == "checkpoint.pt":
            saves.append(path)
            if len(saves) == 3:  # step 300's: its replay buffer and best actor are on disk
                raise KeyboardInterrupt
        write(path, *a, **k)

    monkeypatch.setattr(tc, "atomic_write", stopped_at_the_third)
    with pytest.raises(KeyboardInterrupt):
        tt.train_teacher(cfg)
    monkeypatch.undo()
    work = tmp_path / "t.npz.work"
    shutil.copytree(work, tmp_path / "left")
    cfg.resume = True
    s = tt.train_teacher(cfg)  # was: BpdError 'replay.npz: does not belong to the checkpoint'
    assert s["resumed"] and [h["step"] for h in s["history"]] == [100, 200, 300]
    left = tmp_path / "left"
    ck = torch.load(left / "checkpoint.pt", weights_only=True)
    best = json.loads(ck["best"])
    assert ck["num_timesteps"] == 200 and ck["replay_file"] == "replay-200.npz" and (left / "replay-300.npz").is_file()
    assert best["file"] == f"best-{best['step']}.npz" and best["step"] in (100, 200)
    kept = load_teacher(left / best["file"])
    assert tt.evaluate("InvertedPendulum-v5", kept.act, 1, seed=tt.TRAIN_EVAL_SEED)[0] == [pytest.approx(
        best["return"])]  # the actor the checkpoint names is the one its return was measured on


def test_import_reads_the_box_of_a_stable_baselines3_1x_zip(tmp_path):
    """stable-baselines3 1.x (RL Baselines3 Zoo's older models) records gym's Box, not gymnasium's: it was refused as
    "the action space is not a Box". Known answer: the same zip with either class imports to the same teacher (the
    bounds come from the record's text); a Discrete space of either is still refused."""
    import json
    import zipfile

    from tests.test_bad_input import _sb3_zip

    acts = {}
    for lib in ("gymnasium", "gym"):
        data = {"policy_class": {"__module__": "stable_baselines3.sac.policies"},
                "action_space": {":type:": f"<class '{lib}.spaces.box.Box'>", "low": "[-3.]", "high": "[3.]"},
                "observation_space": {"_shape": [4]}, "env_id": "InvertedPendulum-v5", "policy_kwargs": {}}
        _sb3_zip(tmp_path / f"{lib}.zip", data=data)
        t = import_sb3(TeacherImportConfig(str(tmp_path / f"{lib}.zip"), out=str(tmp_path / f"{lib}.npz")))
        acts[lib] = t.act(np.linspace(-1, 1, 40, dtype=np.float32).reshape(10, 4))
        assert list(t.action_high) == [3.0]
        discrete = data | {"action_space": {":type:": f"<class '{lib}.spaces.discrete.Discrete'>"}}
        with zipfile.ZipFile(tmp_path / "d.zip", "w") as z:
            z.writestr("data", json.dumps(discrete))
            z.writestr("policy.pth", zipfile.ZipFile(tmp_path / f"{lib}.zip").read("policy.pth"))
        with pytest.raises(BpdError, match="the action space is not a Box"):
            import_sb3(TeacherImportConfig(str(tmp_path / "d.zip"), out=str(tmp_path / "d.npz")))
    np.testing.assert_array_equal(acts["gym"], acts["gymnasium"])
