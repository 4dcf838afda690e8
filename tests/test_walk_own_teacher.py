"""What a control engineer meets bringing their own stable-baselines3 teacher and their own data: a hidden activation
the teacher format does not hold (LeakyReLU was read as ReLU), the zip handed to collect/distill/export before its
import (a SAC policy trained with gSDE: tests/test_gsde_teacher.py), a run stopped before its end handed to
evaluate/export/student, and a dataset whose labels are not the given teacher's (another teacher's, or none at all:
another tool's Minari data)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from bpd.errors import BpdError
from tests.conftest import run_bpd
from training.teacher import TeacherImportConfig, import_sb3


def _sb3_zip(tmp_path, algo: str, name: str, **kwargs):
    import stable_baselines3 as sb3

    model = getattr(sb3, algo)("MlpPolicy", "Pendulum-v1", seed=0, device="cpu", **kwargs)
    model.save(tmp_path / name)
    return model, tmp_path / name


def _import(path, **kw):
    return import_sb3(TeacherImportConfig(sb3_zip=str(path), env="Pendulum-v1", out=str(path) + ".npz", **kw))


def test_the_hidden_activation_is_read_by_its_class_name_and_others_are_refused(tmp_path):
    """LeakyReLU's record contains 'relu' and was imported as ReLU (wrong actions at every negative
    pre-activation); ELU asked for --activation, which would have mis-read it too. A PPO with ReLU is read as ReLU
    (PPO's default is tanh) and gives predict's actions; --activation contradicting the record is refused."""
    import torch

    _, leaky = _sb3_zip(tmp_path, "SAC", "leaky.zip",
                        policy_kwargs=dict(net_arch=[8, 8], activation_fn=torch.nn.LeakyReLU))
    with pytest.raises(BpdError, match=r"leaky.zip: the policy's hidden activation is LeakyReLU; the teacher format "
                                       r"holds ReLU and Tanh"):
        _import(leaky)
    _, elu = _sb3_zip(tmp_path, "TD3", "elu.zip", policy_kwargs=dict(net_arch=[8, 8], activation_fn=torch.nn.ELU))
    with pytest.raises(BpdError, match="hidden activation is ELU"):
        _import(elu, activation="relu")
    model, relu = _sb3_zip(tmp_path, "PPO", "relu.zip",
                           policy_kwargs=dict(net_arch=[8, 8], activation_fn=torch.nn.ReLU))
    t = _import(relu)
    assert t.activation == "relu" and t.algo == "ppo"
    obs = np.random.default_rng(0).normal(size=(32, 3)).astype(np.float32) * 3
    np.testing.assert_allclose(t.act(obs), model.predict(obs, deterministic=True)[0], atol=1e-6)
    with pytest.raises(BpdError, match=r"--activation tanh, but the model records ReLU"):
        _import(relu, activation="tanh")


def test_a_stable_baselines3_zip_given_as_the_teacher_names_the_import(tmp_path, tiny_pipeline):
    """collect and distill said 'not a bpd-teacher file (no metadata record)', export 'not a readable student file
    (RuntimeError)'."""
    _, z = _sb3_zip(tmp_path, "SAC", "my_sac.zip", policy_kwargs=dict(net_arch=[8]))
    hint = f"{z}: a stable-baselines3 model, not a teacher file; import it first (bpd teacher import {z} --env ENV"
    for args in (("collect", "--teacher", str(z), "--out", str(tmp_path / "d.npz"), "--steps", "10"),
                 ("distill", "--teacher", str(z), "--dataset", str(tiny_pipeline / "dataset.npz"), "--out",
                  str(tmp_path / "run")),
                 ("export", str(z), "--out", str(tmp_path / "export"))):
        p = run_bpd(*args, check=False)
        assert p.returncode == 1 and p.stderr.strip().splitlines() == [f"bpd: error: {hint} --out teacher.npz) and "
                                                                        "give the teacher file"], args
    assert not any((tmp_path / n).exists() for n in ("d.npz", "run", "export"))


def test_a_run_stopped_before_its_end_is_named_so_with_how_to_finish_it(tmp_path, tiny_pipeline):
    """evaluate said 'not a run directory or an export directory' of a distillation stopped by Ctrl-C, export 'no
    student or teacher file there', student select 'no candidates.pt'; a finished baseline run (its checkpoint and
    policy.npz) is not called unfinished."""
    from bpd_app.evaluate import load_any
    from export.export import load_source
    from training.selection import SelectConfig, SweepConfig, run_select, run_sweep

    run = tmp_path / "stopped"
    run.mkdir()
    for f in ("config.json", "checkpoint.pt", "metrics.csv"):
        shutil.copy(tiny_pipeline / "run" / f, run / f)
    said = f"{run}: a run that has not finished (a checkpoint, no student yet); the command that started it, with " \
           "--resume, finishes it"
    for call in (lambda: load_any(run), lambda: load_source(run), lambda: run_sweep(SweepConfig(run=str(run))),
                 lambda: run_select(SelectConfig(run=str(run))),
                 lambda: run_select(SelectConfig(run=str(run), summary="s.json"))):  # said 'no run summary' first
        with pytest.raises(BpdError) as e:
            call()
        assert str(e.value) == said
    baseline = tmp_path / "baseline"
    baseline.mkdir()
    shutil.copy(run / "checkpoint.pt", baseline / "checkpoint.pt")
    shutil.copy(tiny_pipeline / "teacher.npz", baseline / "policy.npz")
    assert load_any(baseline).kind == "teacher"


def _dataset(teacher, n=50, labelled=True):
    from training.collect import Dataset

    obs = np.random.default_rng(2).normal(size=(n, 2)).astype(np.float32)
    acts = np.random.default_rng(3).uniform(-3, 3, (n, 1)).astype(np.float32)
    meta = {"env_id": "InvertedPendulum-v5", "obs_dim": 2, "act_dim": 1, "teacher_sha256": "ab" * 32}
    if not labelled:
        meta["labels"] = "the dataset's actions (no teacher actions recorded)"
    return Dataset(meta=meta, observations=obs, actions=acts, teacher_actions=teacher.act(obs) if labelled else acts,
                   rewards=np.ones(n, np.float32), next_observations=obs, terminals=np.zeros(n, np.float32),
                   truncations=np.zeros(n, np.float32), obs_mean=obs.mean(0), obs_std=obs.std(0) + 1e-3,
                   action_low=np.array([-3.0], np.float32), action_high=np.array([3.0], np.float32))


def test_a_distillation_clones_the_given_teachers_actions_or_refuses_the_dataset():
    """A dataset with no teacher actions (another tool's Minari dataset: the actions that drove it, random here) was
    cloned as it stood, the given teacher unused: it is labelled by the teacher. A dataset labelled by another teacher
    was cloned silently: refused, naming the step and the teacher that collected it. The teacher's own labels pass."""
    from tests.test_teacher import hand_teacher
    from training.collect import UNLABELLED, teacher_labels

    t = hand_teacher()
    ds = teacher_labels(_dataset(t, labelled=False), t, "other/random-v0")
    np.testing.assert_array_equal(ds.teacher_actions, t.act(ds.observations))
    assert ds.meta["labels"] == UNLABELLED and not np.array_equal(ds.actions, ds.teacher_actions)
    own = _dataset(t)
    assert teacher_labels(own, t, "d.npz") is own
    other = hand_teacher()
    other.biases[-1] = np.array([0.5], np.float32)  # y 0.25 higher at every state
    gap = np.abs(other.act(own.observations) - own.teacher_actions)[:, 0] / 6
    with pytest.raises(BpdError, match=rf"d.npz: its labels are not this teacher's actions \({gap.max():.3g} of the "
                                       rf"action range apart at step {int(np.argmax(gap))}\); it was collected with "
                                       r"another teacher \(sha256 abababababababab\): collect it again"):
        teacher_labels(own, other, "d.npz")


def test_distill_refuses_another_teachers_dataset_before_its_run_directory(tmp_path, tiny_pipeline):
    from training.teacher import load_teacher

    t = load_teacher(tiny_pipeline / "teacher.npz")
    t.biases[-1] = t.biases[-1] + 0.5
    t.save(tmp_path / "other.npz")
    p = run_bpd("distill", "--teacher", str(tmp_path / "other.npz"), "--dataset", str(tiny_pipeline / "dataset.npz"),
                "--out", str(tmp_path / "run"), "--steps", "20", "--eval-every", "20", "--eval-episodes", "1",
                "--select-episodes", "1", "--hidden", "4", "--critic-hidden", "8", "--kl-warmup", "none",
                "--no-progress", check=False)  # on a bpd that took the dataset: seconds, not a default run
    assert p.returncode == 1 and "its labels are not this teacher's actions" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()
    sha = json.loads(np.load(tiny_pipeline / "dataset.npz")["meta"].item())["teacher_sha256"][:16]
    assert f"(sha256 {sha})" in p.stderr


def test_import_says_what_a_file_that_is_no_stable_baselines3_zip_is(tmp_path):
    """A torch .pt (a zip too), an ONNX file and a teacher .npz said 'not a readable stable-baselines3 model
    (KeyError)' or '(BadZipFile)'."""
    import torch

    from tests.test_teacher import hand_teacher

    torch.save(torch.nn.Linear(3, 1).state_dict(), tmp_path / "actor.pt")
    (tmp_path / "actor.onnx").write_bytes(b"\x08\x07\x12\x07pytorch")
    hand_teacher().save(tmp_path / "teacher.npz")
    said = {"actor.pt": "a zip without SB3's 'data' record and policy.pth (a torch .pt?)",
            "actor.onnx": "not a zip archive (an ONNX or pickled torch file?)",
            "teacher.npz": "already a bpd teacher file: give it to collect and distill as it is"}
    for name, what in said.items():
        with pytest.raises(BpdError) as e:
            _import(tmp_path / name)
        assert str(e.value) == (f"{tmp_path / name}: not a readable stable-baselines3 model: {what}; `bpd teacher "
                                "import` reads SB3 SAC, TD3 and PPO zips, other MLPs can be written in the teacher "
                                "format (training/teacher.py)")


def test_the_first_line_says_where_the_student_starts_larger_than_the_teacher():
    """A 32x32 teacher and distill's default 64x64 student: 4*64 + 64*64 + 64*1 = 4,416 weights against the teacher's
    4*32 + 32*32 + 32*1 = 1,184, said on the first line; a 256x256 teacher, nothing."""
    from types import SimpleNamespace

    from training.distill import DistillConfig, _size_note

    def teacher(h):
        widths = [4, h, h, 1]
        return SimpleNamespace(obs_dim=4, act_dim=1, weights=[np.zeros((b, a)) for a, b in zip(widths, widths[1:])])

    cfg = DistillConfig(teacher="t.npz", dataset="d.npz", out="o")
    assert _size_note(cfg, teacher(32)) == ("; the student (64x64: 4,416 weights before pruning) is larger than the "
                                            "teacher (32x32: 1,184): --hidden sets its widths")
    assert _size_note(cfg, teacher(256)) == ""


def test_a_model_whose_action_bounds_are_not_the_environments_is_refused(tmp_path):
    """A TD3 trained on Pendulum-v1 through RescaleAction(-1, 1) acts within [-1, 1]: it was imported with those
    bounds for --env Pendulum-v1 (torque to +-2), and collect rolled it out at half its torque, silently."""
    import gymnasium as gym
    import stable_baselines3 as sb3

    env = gym.wrappers.RescaleAction(gym.make("Pendulum-v1"), -1.0, 1.0)
    sb3.TD3("MlpPolicy", env, seed=0, device="cpu", policy_kwargs=dict(net_arch=[8])).save(tmp_path / "r.zip")
    with pytest.raises(BpdError, match=r"Pendulum-v1 takes actions within \[-2, 2\], the model in .*r\.zip gives "
                                       r"them within \[-1, 1\]: trained through RescaleAction, import it with "
                                       r"--rescaled"):
        _import(tmp_path / "r.zip")
    t = _import(_sb3_zip(tmp_path, "TD3", "bare.zip", policy_kwargs=dict(net_arch=[8]))[1])
    assert t.action_high == [2.0]
    # such a teacher imported before: collect refuses it before its rollout
    from training.collect import CollectConfig, collect

    t.action_low, t.action_high = t.action_low / 2, t.action_high / 2
    t.save(tmp_path / "old.npz")
    with pytest.raises(BpdError, match=r"old\.npz acts within \[-1, 1\], Pendulum-v1 takes actions within \[-2, 2\]"):
        collect(CollectConfig(teacher=str(tmp_path / "old.npz"), out=str(tmp_path / "d.npz"), steps=5, progress=False))
    assert not (tmp_path / "d.npz").exists()


def test_a_zip_naming_no_environment_asks_for_env_with_what_the_model_takes(tmp_path):
    """stable-baselines3 records no environment id: the import said only 'pass --env', not which would fit."""
    _, z = _sb3_zip(tmp_path, "SAC", "p.zip", policy_kwargs=dict(net_arch=[8]))
    with pytest.raises(BpdError, match=r"p\.zip: its record names no environment; pass --env ID, the one it was "
                                       r"trained on \(its 3 observations, 1 action within \[-2, 2\]\)$"):
        import_sb3(TeacherImportConfig(sb3_zip=str(z), out=str(tmp_path / "t.npz")))


@pytest.mark.parametrize("algo", ["TD3", "PPO"])
def test_a_model_trained_through_rescale_action_imports_with_rescaled_and_acts_as_it_trained(tmp_path, algo):
    """A model trained through RescaleAction(-1, 1), SB3's advice, was refused for --env Pendulum-v1 with 'train it
    on gym.make(...) as it is', though the wrapper's map onto +-2 is exact. Known answer with --rescaled: the teacher
    gives RescaleAction's map of the model's own deterministic action (TD3's tanh output, PPO's clip), within +-2."""
    import gymnasium as gym
    import stable_baselines3 as sb3

    env = gym.wrappers.RescaleAction(gym.make("Pendulum-v1"), -1.0, 1.0)
    model = getattr(sb3, algo)("MlpPolicy", env, seed=0, device="cpu", policy_kwargs=dict(net_arch=[8]))
    model.save(tmp_path / "r.zip")
    t = _import(tmp_path / "r.zip", rescaled=True)
    assert (t.action_low.tolist(), t.action_high.tolist()) == ([-2.0], [2.0])
    assert "RescaleAction [-1, 1] -> [-2, 2]" in t.source
    obs = np.random.default_rng(0).uniform(-3, 3, (64, 3)).astype(np.float32)
    if algo == "PPO":  # large means too, so that the clip is met
        model.policy.action_net.bias.data += 2.0
        model.save(tmp_path / "r.zip")
        t = _import(tmp_path / "r.zip", rescaled=True)
    wrapped = model.predict(obs, deterministic=True)[0]  # within [-1, 1], RescaleAction maps it onto [-2, 2]
    np.testing.assert_allclose(t.act(obs), -2.0 + (wrapped + 1.0) * 2.0, atol=1e-5)
    if algo == "PPO":
        assert (np.abs(t.act(obs)) == 2.0).any()
    import zipfile  # a record that names its environment itself: --rescaled still asks for --env, whose bounds it takes

    with zipfile.ZipFile(tmp_path / "r.zip") as z, zipfile.ZipFile(tmp_path / "named.zip", "w") as named:
        for item in z.namelist():
            named.writestr(item, z.read(item) if item != "data" else json.dumps(
                json.loads(z.read("data")) | {"env_id": "Pendulum-v1"}))
    with pytest.raises(BpdError, match="--rescaled maps the model's actions onto an environment's bounds: give --env"):
        import_sb3(TeacherImportConfig(sb3_zip=str(tmp_path / "named.zip"), out=str(tmp_path / "t.npz"), rescaled=True))
