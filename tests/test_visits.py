"""The fine-tune's visits (training/visits.py): when its turns fall, what a turn records, and a run that
uses them resuming after a kill -9 to the same student."""

import json
import signal
import subprocess
import time

import numpy as np
import torch

from tests.conftest import BPD, run_bpd
from training.envs import VISIT_BASE, make_env
from training.visits import Visits, visit_seed

STATS = {"obs_mean": np.full(4, 0.5, np.float32), "obs_std": np.full(4, 2.0, np.float32),
         "action_low": np.array([-3.0], np.float32), "action_high": np.array([3.0], np.float32)}


def test_turns_fall_evenly_through_the_finetune_and_share_the_steps():
    v = Visits("InvertedPendulum-v5", 10, 3, 60, 100, 0, STATS)
    due = []
    for t in range(0, 101):
        if v.due(t):
            due.append((t, v.turn_steps()))
            v.done += 1  # as a turn would
    # after the first fine-tune step (61), then past 60 + 40/3 and 60 + 80/3; 10 steps as 4 + 3 + 3
    assert due == [(61, 4), (74, 3), (87, 3)]
    assert not Visits("InvertedPendulum-v5", 0, 3, 60, 100, 0, STATS).due(99)


def test_a_turn_records_the_students_transitions_with_the_teachers_actions_normalised():
    v = Visits("InvertedPendulum-v5", 40, 2, 0, 10, 7, STATS)
    student = lambda o: np.array([1.5], np.float32)  # noqa: E731  pushes one way: the pole falls, episodes end
    teacher = lambda o: np.array([-0.75], np.float32)  # noqa: E731
    assert v.take_turn(student, teacher) == 20 and v.take_turn(student, teacher) == 20
    d = v.data
    assert {k: tuple(t.shape) for k, t in d.items()} == {"obs": (40, 4), "next_obs": (40, 4), "act": (40, 1),
                                                       "teacher_act": (40, 1), "rew": (40,), "term": (40,)}
    assert torch.all(d["act"] == 0.5) and torch.all(d["teacher_act"] == -0.25)  # 1.5 / 3, -0.75 / 3
    env = make_env("InvertedPendulum-v5")  # the first episode starts from the first visit seed
    o0, _ = env.reset(seed=VISIT_BASE + 7000)
    env.close()
    np.testing.assert_allclose(d["obs"][0].numpy(), (o0 - 0.5) / 2.0, rtol=1e-6)
    ends = int(d["term"].sum())
    assert ends == v.early_ends >= 1 and v.episodes >= ends  # every termination started the next episode
    # within an episode the next state is the next row's state; a turn's cut end is not a termination
    for i in range(39):
        if i != 19 and d["term"][i] == 0:
            assert torch.equal(d["next_obs"][i], d["obs"][i + 1])
    if d["term"][19] == 0:
        assert not torch.equal(d["next_obs"][19], d["obs"][20])  # the second turn began a fresh episode
    assert d["term"][39] == 0 or v.early_ends >= 1
    assert torch.equal(d["rew"], 1.0 - d["term"])  # InvertedPendulum-v5 pays 1 a step the pole stays up, 0 as it falls
    s = v.summary()
    assert s["env_steps"] == 40 and s["turns"] == 2
    assert s["seeds"] == [[visit_seed(7, 0), visit_seed(7, s["episodes"] - 1)]]
    w = Visits("InvertedPendulum-v5", 40, 2, 0, 10, 7, STATS)
    w.load_state_dict(v.state_dict())
    base = {"obs": torch.zeros(3, 4), "rew": torch.ones(3)}
    joined = w.joined(base)
    assert joined["obs"].shape == (43, 4) and torch.equal(joined["rew"][3:], d["rew"])


def test_a_turn_taken_again_from_an_earlier_state_is_the_same_turn():
    """A run killed after a turn and before its next checkpoint takes that turn again on resuming."""
    student = lambda o: np.clip(-2.0 * o[1:2], -3, 3)  # noqa: E731  a deterministic policy of the state
    teacher = lambda o: np.clip(o[:1], -3, 3)  # noqa: E731
    v = Visits("InvertedPendulum-v5", 30, 3, 0, 30, 2, STATS)
    v.take_turn(student, teacher)
    saved = v.state_dict()
    v.take_turn(student, teacher)
    w = Visits("InvertedPendulum-v5", 30, 3, 0, 30, 2, STATS)
    w.load_state_dict(saved)
    w.take_turn(student, teacher)
    assert (w.done, w.episodes, w.early_ends) == (v.done, v.episodes, v.early_ends)
    for k in v.data:
        assert torch.equal(v.data[k], w.data[k]), k


def test_visit_noise_perturbs_the_applied_action_from_the_episodes_seed_within_the_bounds():
    student = lambda o: np.array([2.5], np.float32)  # noqa: E731  near the bound: some noisy actions clip at 3
    teacher = lambda o: np.array([0.0], np.float32)  # noqa: E731
    v = Visits("InvertedPendulum-v5", 12, 1, 0, 10, 4, STATS, noise=0.5)
    v.take_turn(student, teacher)
    # the first episode's draws: Gaussian of std 0.5 x half the range (3), from the first visit seed's generator
    rng = np.random.default_rng(visit_seed(4, 0))
    first_len = int(np.argmax(v.data["term"].numpy())) + 1 if v.data["term"].any() else 12
    want = np.clip(2.5 + rng.normal(0.0, 0.5, (first_len, 1)) * 3.0, -3.0, 3.0).astype(np.float32) / 3.0
    np.testing.assert_allclose(v.data["act"][:first_len].numpy(), want, rtol=1e-6)
    assert float(v.data["act"].max()) <= 1.0 and (v.data["act"] == 1.0).any()  # clipped at the bound
    assert torch.all(v.data["teacher_act"] == 0.0) and v.summary()["noise"] == 0.5
    w = Visits("InvertedPendulum-v5", 12, 1, 0, 10, 4, STATS, noise=0.5)  # the same turn again: the same draws
    w.take_turn(student, teacher)
    assert torch.equal(v.data["act"], w.data["act"])


def test_visit_noise_needs_visits():
    """The rule, checked in-process (the CLI turns a BpdError into its one-line error and exit 1:
    test_finetune_visits_need_the_bayesian_finetune runs that path)."""
    import argparse

    import pytest

    from bpd.config import add_arguments, from_namespace
    from bpd.errors import BpdError
    from training.distill_config import DistillConfig, _check_config

    def parse(*argv):
        ap = argparse.ArgumentParser()
        add_arguments(ap, DistillConfig)
        return from_namespace(DistillConfig, ap.parse_args(["--teacher", "t.npz", "--dataset", "d.npz",
                                                            "--finetune", "0.5", *argv]))

    with pytest.raises(BpdError, match="--finetune-visit-noise .* needs --finetune-visits"):
        _check_config(parse("--finetune-visit-noise", "0.3"))
    with pytest.raises(BpdError, match="finetune.visit.noise"):
        _check_config(parse("--finetune-visits", "100", "--finetune-visit-noise", "-1"))
    _check_config(parse("--finetune-visits", "100", "--finetune-visit-noise", "0.3"))  # the row's options pass


def test_turns_are_capped_by_the_steps_and_the_finetune():
    assert Visits("InvertedPendulum-v5", 2, 10, 0, 100, 0, STATS).chunks == 2  # never a turn of no steps
    assert Visits("InvertedPendulum-v5", 50, 10, 95, 100, 0, STATS).chunks == 5  # at most one a fine-tune step


def test_visit_episodes_past_the_run_seeds_block_take_seeds_of_their_own():
    """Known answer: episode i < 1000 of run seed 3 from 403000 + i (as always); past 1000 they ran on into run seed
    4's block (404000 on). Now from 10,000,000 + 20,000,000 x 3 + (i - 1000), a range no other run seed's or
    evaluation's meets; --finetune-visits above 20,000,000 steps (that many episodes at most) is refused."""
    import pytest

    from bpd.errors import BpdError
    from training.distill_config import DistillConfig, _check_config

    assert [visit_seed(3, i) for i in (0, 999, 1000, 1001)] == [403_000, 403_999, 70_000_000, 70_000_001]
    assert visit_seed(99, 20_000_999) < 2**31 - 1
    ranges = [(visit_seed(s, 1000), visit_seed(s, 1000 + 20_000_000 - 1)) for s in range(100)]
    assert all(a[1] < b[0] for a, b in zip(ranges, ranges[1:])) and ranges[0][0] > visit_seed(99, 999)
    student = lambda o: np.array([3.0], np.float32)  # noqa: E731  full push: the pole falls within a few steps
    teacher = lambda o: np.array([0.0], np.float32)  # noqa: E731
    v = Visits("InvertedPendulum-v5", 1060, 2, 0, 10, 3, STATS)
    v.load_state_dict({"done": 1, "episodes": 999, "early_ends": 0, "data": {}})  # a resumed turn's state
    v.take_turn(student, teacher)
    assert v.episodes > 1000 and v.seed_ranges() == [[403_000, 403_999], [70_000_000, 70_000_000 + v.episodes - 1001]]
    cfg = DistillConfig(teacher="t.npz", dataset="d.npz", finetune=0.5, finetune_visits=20_000_001)
    with pytest.raises(BpdError, match="finetune.visits"):
        _check_config(cfg)


def test_finetune_visits_need_the_bayesian_finetune(tiny_pipeline, tmp_path):
    d = tiny_pipeline
    p = run_bpd("distill", "--teacher", str(d / "teacher.npz"), "--dataset", str(d / "dataset.npz"), "--out",
                str(tmp_path / "r"), "--finetune", "0", "--finetune-visits", "100", check=False)
    assert p.returncode != 0 and "--finetune-visits" in p.stderr and "Traceback" not in p.stderr


def _args(d, out):
    return ["distill", "--teacher", str(d / "teacher.npz"), "--dataset", str(d / "dataset.npz"), "--out", str(out),
            "--steps", "400", "--eval-every", "100", "--eval-episodes", "1", "--checkpoint-every", "10",
            "--hidden", "16", "16", "--critic-hidden", "32", "32", "--no-progress", "--seed", "5",
            "--kl-warmup", "none", "--finetune", "0.5", "--finetune-visits", "60"]


def test_a_run_with_visits_resumes_after_kill9_to_the_same_student(tiny_pipeline, tmp_path):
    d = tiny_pipeline
    run_bpd(*_args(d, tmp_path / "full"))
    s = json.loads((tmp_path / "full" / "summary.json").read_text())
    assert s["visits"]["env_steps"] == 60 and s["visits"]["turns"] == 2  # round(0.5 * 400 / 100) turns of 30
    out = tmp_path / "killed"
    p = subprocess.Popen([BPD, *_args(d, out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    done = 0
    while done < 1 and p.poll() is None and time.time() < deadline:  # killed once a turn is in a checkpoint
        time.sleep(0.05)
        try:
            done = torch.load(out / "checkpoint.pt", weights_only=True).get("visits", {}).get("done", 0)
        except (OSError, RuntimeError, EOFError):
            pass
    p.send_signal(signal.SIGKILL)
    assert p.wait() == -signal.SIGKILL and done >= 1  # killed mid-run, after a turn
    assert not (out / "summary.json").exists()
    run_bpd(*_args(d, out), "--resume")
    a = torch.load(tmp_path / "full" / "student.pt", weights_only=True)["state_dict"]
    b = torch.load(out / "student.pt", weights_only=True)["state_dict"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    assert json.loads((out / "summary.json").read_text())["visits"] == s["visits"]
