"""A stable-baselines3 SAC trained with gSDE (use_sde=True, as RL Baselines3 Zoo's tuned SAC models are): its actor's
mean is a Linear then Hardtanh(-clip_mean, clip_mean) before the tanh. `bpd teacher import` refused it, so its owner
could not start; the teacher format now holds the clip (mean_clip), and every reader of a teacher's network applies it
(act: collect, distill, evaluate; the baselines' and multi-task's torch teacher) or refuses in one line (export), the
bench comparing cost on the teacher's layers and saying so."""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from bpd.errors import BpdError
from bpd.io import load_arrays, save_arrays
from tests.conftest import pendulum_export, run_bpd
from tests.test_teacher import hand_teacher
from training.teacher import TeacherImportConfig, import_sb3, load_teacher

ROOT = Path(__file__).resolve().parents[1]
OLD = ROOT / "benchmarks" / "teachers" / "InvertedPendulum-v5.npz"  # a teacher file written before mean_clip


def _sde_zip(tmp_path, name: str, scale: float = 20.0, **policy_kwargs):
    """A tiny gSDE SAC as initialised, its mean's Linear scaled up so that most states' means pass the clip."""
    import stable_baselines3 as sb3
    import torch

    model = sb3.SAC("MlpPolicy", "Pendulum-v1", seed=0, device="cpu", use_sde=True,
                    policy_kwargs=dict(net_arch=[8], **policy_kwargs))
    with torch.no_grad():
        for p in model.actor.mu.parameters():
            p.mul_(scale)
    model.save(tmp_path / name)
    return model, tmp_path / name


def _import(path):
    return import_sb3(TeacherImportConfig(sb3_zip=str(path), env="Pendulum-v1", out=str(path) + ".npz"))


def _obs(n: int = 400) -> np.ndarray:
    return (np.random.default_rng(1).normal(size=(n, 3)) * 3).astype(np.float32)


def _means(model, obs: np.ndarray) -> np.ndarray:
    """The gSDE actor's mean before its Hardtanh."""
    import torch

    with torch.no_grad():
        return model.actor.mu[0](model.actor.latent_pi(torch.as_tensor(obs))).numpy()


def test_a_gsde_sac_imports_with_its_clip_and_acts_as_predict(tmp_path):
    """Was: 'a SAC policy trained with gSDE ... which the teacher format cannot hold'. The zip records no clip_mean
    (SB3's default, 2); the teacher's actions are predict's, on states whose mean lies beyond the clip and within it,
    where the same layers without the clip act otherwise; its file (version 2) gives them back."""
    model, z = _sde_zip(tmp_path, "sde.zip")
    assert "clip_mean" not in json.loads(zipfile.ZipFile(z).read("data"))["policy_kwargs"]
    obs = _obs()
    mean = _means(model, obs)
    assert (np.abs(mean) > 2.0).mean() > 0.3 and (np.abs(mean) < 2.0).mean() > 0.05  # both sides of the clip
    expected = model.predict(obs, deterministic=True)[0]
    t = _import(z)
    assert t.mean_clip == 2.0
    np.testing.assert_allclose(t.act(obs), expected, atol=1e-5)
    assert np.abs(dataclasses.replace(t, mean_clip=None).act(obs) - expected).max() > 0.05
    t.save(tmp_path / "t.npz")
    meta, _ = load_arrays(tmp_path / "t.npz", "bpd-teacher")
    assert (meta["format_version"], meta["mean_clip"]) == (2, 2.0)
    np.testing.assert_array_equal(load_teacher(tmp_path / "t.npz").act(obs), t.act(obs))


def test_the_recorded_clip_mean_is_the_one_applied_and_zero_is_none(tmp_path):
    obs = _obs()
    model, z = _sde_zip(tmp_path, "half.zip", clip_mean=0.5)
    t = _import(z)
    assert t.mean_clip == 0.5 and (np.abs(_means(model, obs)) > 0.5).mean() > 0.5
    np.testing.assert_allclose(t.act(obs), model.predict(obs, deterministic=True)[0], atol=1e-5)
    model, z = _sde_zip(tmp_path, "none.zip", clip_mean=0.0)  # SB3 puts no Hardtanh: a plain Linear
    t = _import(z)
    assert t.mean_clip is None
    np.testing.assert_allclose(t.act(obs), model.predict(obs, deterministic=True)[0], atol=1e-5)
    t.save(tmp_path / "t.npz")
    meta, _ = load_arrays(tmp_path / "t.npz", "bpd-teacher")
    assert meta["format_version"] == 1 and "mean_clip" not in meta  # readable by a bpd from before the clip


def test_the_import_command_says_the_clip(tmp_path):
    _, z = _sde_zip(tmp_path, "sde.zip")
    p = run_bpd("teacher", "import", str(z), "--env", "Pendulum-v1", "--out", str(tmp_path / "t.npz"))
    assert "3-8-1 relu (output tanh, its mean clipped to +-2 first (gSDE)), " in p.stdout
    assert load_teacher(tmp_path / "t.npz").mean_clip == 2.0


def test_a_record_whose_clip_is_no_number_is_refused_in_one_line(tmp_path):
    """What is still refused: a gSDE actor whose record gives a clip_mean that is not a finite number above 0."""
    _, z = _sde_zip(tmp_path, "sde.zip")
    with zipfile.ZipFile(z) as src:
        files = {n: src.read(n) for n in src.namelist()}
    data = json.loads(files["data"])
    data["policy_kwargs"]["clip_mean"] = "2"
    files["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(tmp_path / "bad.zip", "w") as dst:
        for n, b in files.items():
            dst.writestr(n, b)
    with pytest.raises(BpdError) as e:
        _import(tmp_path / "bad.zip")
    assert str(e.value) == f"{tmp_path / 'bad.zip'}: mean_clip (SAC's gSDE clip_mean) 2 is not a finite number above 0"


def test_mean_clip_known_answers_and_bad_values_in_a_file(tmp_path):
    """hand_teacher: obs [5, 0.5] gives y = 2.25, clipped to 1; obs [1, 2] gives y = 0.25, within it."""
    t = dataclasses.replace(hand_teacher(), mean_clip=1.0)
    np.testing.assert_allclose(t.act(np.array([[5.0, 0.5], [1.0, 2.0]]))[:, 0],
                               [-3 + (np.tanh(1.0) + 1) * 3, -3 + (np.tanh(0.25) + 1) * 3], rtol=1e-6)
    t.save(tmp_path / "t.npz")
    meta, arrays = load_arrays(tmp_path / "t.npz", "bpd-teacher")
    for bad in (0, -1.0, "2", True, float("inf")):
        save_arrays(tmp_path / "bad.npz", meta | {"mean_clip": bad}, arrays)
        with pytest.raises(BpdError) as e:
            load_teacher(tmp_path / "bad.npz")
        assert str(e.value) == (f"{tmp_path / 'bad.npz'}: mean_clip (SAC's gSDE clip_mean) {bad} is not a finite "
                                "number above 0")


def test_an_old_teacher_file_loads_and_acts_as_the_format_says(tmp_path):
    """A version-1 file has no clip: its actions are the format's formula on its own arrays, and saved again it stays
    version 1."""
    meta, a = load_arrays(OLD, "bpd-teacher")
    assert meta["format_version"] == 1 and "mean_clip" not in meta
    t = load_teacher(OLD)
    assert t.mean_clip is None
    obs = (np.random.default_rng(2).normal(size=(300, 4)) * 2).astype(np.float32)
    h = (obs - a["obs_mean"]) / a["obs_std"]
    for i in range(meta["layers"]):
        h = h @ a[f"W{i}"].T + a[f"b{i}"]
        if i < meta["layers"] - 1:
            h = np.tanh(h) if meta["activation"] == "tanh" else np.maximum(h, 0)
    low, high = a["action_low"], a["action_high"]
    want = low + (np.tanh(h) + 1) / 2 * (high - low) if meta["output"] == "tanh" else np.clip(h, low, high)
    np.testing.assert_allclose(t.act(obs), want, rtol=1e-5, atol=1e-6)
    t.save(tmp_path / "again.npz")
    again, _ = load_arrays(tmp_path / "again.npz", "bpd-teacher")
    assert again["format_version"] == 1 and "mean_clip" not in again


def test_the_baselines_torch_teacher_takes_the_clipped_mean_and_its_zip(tmp_path):
    """The baselines' (and multi-task's) teacher Gaussian: its mean is the clipped one, tanh of it the teacher's
    action; the gSDE zip given as --teacher-sb3 is the teacher's (was: 'its actor is not the teacher's')."""
    import torch

    from training.baseline_nets import TeacherModel, check_sb3_matches, read_sb3

    _, z = _sde_zip(tmp_path, "sde.zip")
    t = _import(z)
    obs = _obs()
    sd = read_sb3(z)
    check_sb3_matches(sd, t, z)
    tm = TeacherModel(t, 0.3, sd)
    mu, _ = tm(torch.as_tensor(obs))
    assert mu.abs().max().item() == pytest.approx(2.0)
    np.testing.assert_allclose(t.action_low + (np.tanh(mu.numpy()) + 1) / 2 * (t.action_high - t.action_low),
                               t.act(obs), atol=1e-5)
    assert tm.distribution.endswith("; the zip's gSDE noise is not read")


def test_export_refuses_a_clipped_teacher_in_one_line(tmp_path):
    dataclasses.replace(hand_teacher(), mean_clip=1.0).save(tmp_path / "t.npz")
    p = run_bpd("export", str(tmp_path / "t.npz"), "--out", str(tmp_path / "e"), check=False)
    assert p.returncode == 1 and p.stderr.strip().splitlines() == [
        f"bpd: error: {tmp_path / 't.npz'}: the teacher clips its mean to +-1 before the tanh (SAC trained with gSDE), "
        "which bpd's exported kernels do not hold; export a student distilled from it"]
    assert not (tmp_path / "e").exists()


def test_bench_compares_with_the_teachers_layers_and_says_so(tmp_path, monkeypatch):
    """bench exports the dense teacher for its cost: a clipped one's layers, the clip left out, said in bench.md."""
    import export.export as ex
    from firmware_host.measure.bench import BenchConfig, run_bench
    from firmware_host.measure.bench_report import markdown

    t = load_teacher(OLD)
    t.mean_clip = 1.5
    t.save(tmp_path / "gsde.npz")
    given = []

    def stop(cfg, *a, **k):
        given.append(cfg)
        raise RuntimeError("stop")

    monkeypatch.setattr(ex, "run_export", stop)
    with pytest.raises(RuntimeError, match="stop"):
        run_bench(BenchConfig(export=str(pendulum_export()), teacher=str(tmp_path / "gsde.npz"),
                              out=str(tmp_path / "b"), targets=["cortex-m4f"]))
    layers = load_teacher(given[0].source)
    assert layers.mean_clip is None and all(np.array_equal(a, b) for a, b in zip(layers.weights, t.weights))
    note = ("the teacher's layers, exported without its clip of the mean to +-1.5 before the tanh (SAC trained with "
            "gSDE), which bpd's kernels do not hold")
    res = {"targets": [], "networks": {}, "teacher_note": note}
    assert f"Teacher: {note}." in markdown(res).splitlines()
