"""Minari datasets both ways (training/minari_io.py).

Known answers: the same rollout written as a .npz and as a Minari dataset reads back to the same arrays
bit for bit; Minari's own reader sees the episodes, steps, environment and teacher actions bpd wrote; a
dataset another tool wrote (no teacher actions) is labelled by its own actions; distillation from the
Minari copy gives the same student as from the .npz; malformed input is one line.
"""

import os

import numpy as np
import pytest

from tests.conftest import ROOT, run_bpd

minari = pytest.importorskip("minari", reason="the 'minari' extra is not installed")

ARRAYS = ("observations", "actions", "teacher_actions", "rewards", "next_observations", "terminals", "truncations",
          "obs_mean", "obs_std", "action_low", "action_high")


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A Minari store of the test's own (the variable reaches the `bpd` subprocesses too)."""
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


def _collect(tiny, *args):
    return run_bpd("collect", "--teacher", str(tiny / "teacher.npz"), "--steps", "300", "--seed", "4",
                   "--episode-steps", "40", "--no-progress", *args)


def test_collect_to_minari_reads_back_as_the_npz_does(tiny_pipeline, store, tmp_path):
    from training.collect import dataset_hash, load_dataset

    _collect(tiny_pipeline, "--out", str(tmp_path / "d.npz"))
    _collect(tiny_pipeline, "--out", "bpd/tiny-v0", "--format", "minari")
    npz = load_dataset(tmp_path / "d.npz")
    mds = load_dataset("minari:bpd/tiny-v0", npz.meta["obs_dim"])
    for k in ARRAYS:
        assert np.array_equal(getattr(npz, k), getattr(mds, k)), k
    assert mds.meta["env_id"] == npz.meta["env_id"] and mds.meta["teacher_sha256"] == npz.meta["teacher_sha256"]
    assert mds.meta["labels"] == "teacher actions"
    assert load_dataset("bpd/tiny-v0").meta["source"] == "minari:bpd/tiny-v0"  # an id alone, no file of that name
    assert len(dataset_hash("minari:bpd/tiny-v0")) == 64

    # what another library sees, through Minari's own reader
    m = minari.load_dataset("bpd/tiny-v0")
    assert m.total_steps == 300 and m.spec.env_spec.id == npz.meta["env_id"]
    eps = list(m.iterate_episodes())
    ends = np.flatnonzero((npz.terminals > 0) | (npz.truncations > 0))
    assert len(eps) == len(ends) and [len(e.actions) for e in eps] == list(np.diff(np.concatenate([[-1], ends])))
    first = eps[0]
    n = len(first.actions)
    assert np.array_equal(first.infos["teacher_action"][:n].astype(np.float32), npz.teacher_actions[:n])
    assert np.array_equal(first.observations[1:n + 1].astype(np.float32), npz.next_observations[:n])


def test_distill_from_minari_gives_the_students_of_the_npz(tiny_pipeline, store, tmp_path):
    import torch

    _collect(tiny_pipeline, "--out", str(tmp_path / "d.npz"))
    _collect(tiny_pipeline, "--out", "bpd/same-v0", "--format", "minari")
    args = ["--teacher", str(tiny_pipeline / "teacher.npz"), "--steps", "60", "--eval-every", "30", "--eval-episodes",
            "1", "--checkpoint-every", "30", "--hidden", "8", "8", "--critic-hidden", "16", "16", "--no-progress"]
    run_bpd("distill", "--dataset", str(tmp_path / "d.npz"), "--out", str(tmp_path / "a"), *args)
    run_bpd("distill", "--dataset", "minari:bpd/same-v0", "--out", str(tmp_path / "b"), *args)
    sa = torch.load(tmp_path / "a" / "student.pt", weights_only=True)
    sb = torch.load(tmp_path / "b" / "student.pt", weights_only=True)
    wa, wb = sa["state_dict"] if "state_dict" in sa else sa, sb["state_dict"] if "state_dict" in sb else sb
    tensors = [k for k, v in wa.items() if isinstance(v, torch.Tensor)]
    assert tensors and all(torch.equal(wa[k], wb[k]) for k in tensors)


def test_a_dataset_without_teacher_actions_is_labelled_by_its_actions(store):
    from minari.data_collector import EpisodeBuffer

    from training.collect import load_dataset

    rng = np.random.default_rng(0)
    bufs = [EpisodeBuffer(id=i, observations=rng.normal(size=(6, 4)).astype(np.float32),
                          actions=rng.uniform(-3, 3, (5, 1)).astype(np.float32), rewards=[1.0] * 5,
                          terminations=[False] * 4 + [i == 0], truncations=[False] * 5) for i in range(2)]
    minari.create_dataset_from_buffers("other/expert-v0", bufs, env="InvertedPendulum-v5", data_format="hdf5")
    ds = load_dataset("minari:other/expert-v0", 4, 1)
    assert len(ds) == 10 and np.array_equal(ds.teacher_actions, ds.actions)
    assert ds.meta["labels"].startswith("the dataset's actions") and ds.meta["env_id"] == "InvertedPendulum-v5"
    # the second episode neither terminates nor is marked truncated: it ends as a truncation
    assert ds.terminals.tolist() == [0, 0, 0, 0, 1] + [0] * 5 and ds.truncations[-1] == 1
    assert ds.action_low.tolist() == [-3.0] and ds.action_high.tolist() == [3.0]


def test_minari_input_errors_are_one_line(tiny_pipeline, store):
    from minari.data_collector import EpisodeBuffer

    _collect(tiny_pipeline, "--out", "bpd/once-v0", "--format", "minari")
    cases = {
        "exists": run_bpd("collect", "--teacher", str(tiny_pipeline / "teacher.npz"), "--out", "bpd/once-v0",
                          "--format", "minari", "--steps", "10", "--no-progress", check=False),
        "bad id": run_bpd("collect", "--teacher", str(tiny_pipeline / "teacher.npz"), "--out", "../x y",
                          "--format", "minari", "--steps", "10", "--no-progress", check=False),
        "missing": run_bpd("distill", "--teacher", str(tiny_pipeline / "teacher.npz"), "--dataset",
                           "minari:bpd/none-v0", "--out", str(store / "r"), "--steps", "5", check=False),
    }
    for name, p in cases.items():
        lines = p.stderr.strip().splitlines()
        assert p.returncode not in (0, 70) and len(lines) == 1 and lines[0].startswith("bpd: error:"), (name, p.stderr)
    assert "exists" in cases["exists"].stderr and "not a Minari dataset id" in cases["bad id"].stderr
    assert "bpd/none-v0: not in Minari's local store" in cases["missing"].stderr  # not Minari's download=True
    # dictionary observations: refused by name
    bufs = [EpisodeBuffer(id=0, observations={"a": np.zeros((3, 2), np.float32)},
                          actions=np.zeros((2, 1), np.float32), rewards=[0.0, 0.0], terminations=[False, True],
                          truncations=[False, False])]
    import gymnasium as gym

    minari.create_dataset_from_buffers("other/dict-v0", bufs, data_format="hdf5",
                                       observation_space=gym.spaces.Dict({"a": gym.spaces.Box(-1, 1, (2,))}),
                                       action_space=gym.spaces.Box(-1, 1, (1,)))
    p = run_bpd("distill", "--teacher", str(tiny_pipeline / "teacher.npz"), "--dataset", "minari:other/dict-v0",
                "--out", str(store / "r2"), "--steps", "5", check=False)
    assert p.returncode not in (0, 70) and "flat vectors" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert os.environ["MINARI_DATASETS_PATH"] == str(store)


def test_teacher_actions_that_are_not_one_per_step_are_one_line(store):
    """Another tool's infos['teacher_action'] shorter than its episode is refused by name, not a traceback."""
    from minari.data_collector import EpisodeBuffer

    from bpd.errors import BpdError
    from training.collect import load_dataset

    rng = np.random.default_rng(0)
    bufs = [EpisodeBuffer(id=0, observations=rng.normal(size=(6, 4)).astype(np.float32),
                          actions=rng.uniform(-3, 3, (5, 1)).astype(np.float32), rewards=[1.0] * 5,
                          terminations=[False] * 4 + [True], truncations=[False] * 5,
                          infos={"teacher_action": np.zeros((2, 1), np.float32)})]
    minari.create_dataset_from_buffers("other/short-v0", bufs, env="InvertedPendulum-v5", data_format="hdf5")
    with pytest.raises(BpdError, match=r"teacher_action'\] is not one action per step"):
        load_dataset("minari:other/short-v0")


def test_export_takes_a_minari_dataset_and_a_run_whose_minari_dataset_is_gone(tiny_pipeline, store, tmp_path,
                                                                               monkeypatch):
    """`bpd export --dataset minari:ID` draws its parity states from the dataset and calibrates the integer
    kernel on it; a run distilled from a Minari dataset exports with it, and, the dataset gone from the
    store, on its own states as a run whose .npz is gone does; a missing --dataset is one line."""
    import json

    _collect(tiny_pipeline, "--out", "bpd/exp-v0", "--format", "minari")
    common = ["--kernel", "integer", "--episodes", "0", "--parity-samples", "300"]

    def report(out):
        r = json.loads((out / "export_report.json").read_text())
        return r["parity"]["origin"], r["kernel"]["calibration"]["origin"]

    run_bpd("export", str(tiny_pipeline / "run"), "--out", str(tmp_path / "e1"), "--dataset", "minari:bpd/exp-v0",
            *common)
    parity, calib = report(tmp_path / "e1")
    assert parity.startswith("150 dataset states") and calib == "dataset minari:bpd/exp-v0"
    run_bpd("distill", "--teacher", str(tiny_pipeline / "teacher.npz"), "--dataset", "minari:bpd/exp-v0", "--out",
            str(tmp_path / "run"), "--steps", "60", "--eval-every", "30", "--eval-episodes", "1", "--checkpoint-every",
            "30", "--hidden", "8", "8", "--critic-hidden", "16", "16", "--no-progress")
    run_bpd("export", str(tmp_path / "run"), "--out", str(tmp_path / "e2"), *common)
    assert report(tmp_path / "e2")[0].startswith("150 dataset states")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "empty"))
    run_bpd("export", str(tmp_path / "run"), "--out", str(tmp_path / "e3"), *common)
    assert report(tmp_path / "e3") == ("300 uniform within mean +- 3 std (no dataset found)",
                                       "parity states (no dataset found)")
    p = run_bpd("export", str(tmp_path / "run"), "--out", str(tmp_path / "e4"), "--dataset", "minari:bpd/exp-v0",
                *common, check=False)
    lines = p.stderr.strip().splitlines()
    assert p.returncode not in (0, 70) and len(lines) == 1 and "not in Minari's local store" in lines[0], p.stderr


def test_a_run_distilled_from_a_minari_id_alone_records_the_dataset(tiny_pipeline, store, tmp_path):
    """`--dataset NS/NAME-vN` (an id alone) is recorded as minari:NS/NAME-vN: it was recorded as a path relative to the
    run ('../bpd/bare-v0'), which export then found nowhere and drew its parity states at random."""
    import json
    from pathlib import Path

    from export.export import recorded_input
    from training.collect import dataset_exists

    _collect(tiny_pipeline, "--out", "bpd/bare-v0", "--format", "minari")
    run_bpd("distill", "--teacher", str(tiny_pipeline / "teacher.npz"), "--dataset", "bpd/bare-v0", "--out", "run",
            "--steps", "20", "--eval-every", "10", "--eval-episodes", "1", "--checkpoint-every", "10", "--hidden", "8",
            "8", "--critic-hidden", "8", "8", "--no-progress", cwd=tmp_path)
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())["dataset"]
    assert recorded == "minari:bpd/bare-v0"
    assert dataset_exists(recorded_input(recorded, Path(tmp_path / "run")))
    # `bpd bench` of its export finds the dataset too (it made the recorded name a path, run/minari:bpd/bare-v0)
    from firmware_host.measure.bench import _run_inputs

    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "export.json").write_text(json.dumps({"source": "../run/student.pt"}))
    assert _run_inputs(tmp_path / "exp", None)[1] == "minari:bpd/bare-v0"


def test_a_run_begun_on_a_bare_minari_id_before_it_was_recorded_so_resumes(tiny_pipeline, store, tmp_path,
                                                                              monkeypatch):
    """A baseline or multi-task run begun on `--dataset bpd/bare-v0` recorded '../bpd/bare-v0' (relative to the run);
    the same command now records minari:bpd/bare-v0, and resuming said 'started with a different configuration
    (dataset)'. The old record is read as the id it was given as; another file's path still differs."""
    from training.baselines import _same_file
    from training.multitask import _differing

    _collect(tiny_pipeline, "--out", "bpd/bare-v0", "--format", "minari")
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    assert _same_file("../bpd/bare-v0", "minari:bpd/bare-v0", run)
    assert not _same_file("../bpd/other-v0", "minari:bpd/bare-v0", run)
    assert _differing({"datasets": ["../bpd/bare-v0"]}, {"datasets": ["minari:bpd/bare-v0"]}, run) == []
    assert _differing({"datasets": ["../d.npz"]}, {"datasets": ["minari:bpd/bare-v0"]}, run) == ["datasets"]


def test_another_tools_bad_dataset_is_told_where_and_what_to_do(store):
    """A NaN was 'observations contains NaN or Inf' (no step among thousands), a dataset without an environment said
    only so, and one of another environment only that its sizes differ from the teacher's."""
    import gymnasium as gym
    from minari.data_collector import EpisodeBuffer

    from bpd.errors import BpdError
    from training.collect import load_dataset

    def bufs(od):
        obs = np.arange(4 * od, dtype=np.float32).reshape(4, od)
        return [EpisodeBuffer(id=i, observations=obs.copy(), actions=np.zeros((3, 1), np.float32), rewards=[0.0] * 3,
                              terminations=[False, False, True], truncations=[False] * 3) for i in range(2)]

    nan = bufs(4)
    nan[1].observations[1, 2] = np.nan  # episode 1's second step: step 4 of the dataset
    minari.create_dataset_from_buffers("other/nan-v0", nan, env="InvertedPendulum-v5", data_format="hdf5")
    with pytest.raises(BpdError, match=r"observations contains NaN or Inf \(first at step 4, episode 1\)$"):
        load_dataset("minari:other/nan-v0")
    minari.create_dataset_from_buffers("other/pend-v0", bufs(3), env="Pendulum-v1", data_format="hdf5")
    with pytest.raises(BpdError, match=r"observations have 3 dimensions, the teacher expects 4 \(a dataset of "
                                       r"Pendulum-v1: give one of the teacher's environment\)$"):
        load_dataset("minari:other/pend-v0", 4, 1)
    minari.create_dataset_from_buffers("other/noenv-v0", bufs(4), data_format="hdf5",
                                       observation_space=gym.spaces.Box(-np.inf, np.inf, (4,)),
                                       action_space=gym.spaces.Box(-3, 3, (1,)))
    with pytest.raises(BpdError, match=r"records no environment .*create_dataset_from_buffers\(\.\.\., env=ID\)"):
        load_dataset("minari:other/noenv-v0")


def test_a_minari_name_without_format_minari_is_refused_before_any_file(tmp_path, monkeypatch):
    """`--out minari:bpd/x-v0` without --format minari wrote a .npz named 'minari:bpd/x-v0' (in a new directory
    'minari:bpd'), which `--dataset minari:bpd/x-v0` then did not find in Minari's store."""
    from bpd.errors import BpdError
    from training.collect import CollectConfig, collect

    monkeypatch.chdir(tmp_path)
    with pytest.raises(BpdError, match=r"^--out minari:bpd/x-v0: a Minari dataset id; add --format minari"):
        collect(CollectConfig(teacher=str(ROOT / "benchmarks" / "teachers" / "InvertedPendulum-v5.npz"),
                              out="minari:bpd/x-v0", steps=5, progress=False))
    assert not list(tmp_path.iterdir())


def test_a_dataset_declaring_other_action_bounds_than_its_environments_is_refused(store):
    """Another tool's InvertedPendulum-v5 data given action_space=Box(-1, 1) (actions normalised) was distilled with
    those bounds: the teacher's labels clipped to +-1 and the student shipped acting within +-1 of the pendulum's +-3.
    The same data in the environment's own space is labelled by the teacher."""
    import gymnasium as gym
    from minari.data_collector import EpisodeBuffer

    from bpd.errors import BpdError
    from training.collect import load_dataset, teacher_labels
    from training.teacher import load_teacher

    teacher = load_teacher(ROOT / "benchmarks" / "teachers" / "InvertedPendulum-v5.npz")
    rng = np.random.default_rng(0)
    bufs = [EpisodeBuffer(id=0, observations=rng.normal(size=(6, 4)).astype(np.float32),
                          actions=rng.uniform(-1, 1, (5, 1)).astype(np.float32), rewards=[1.0] * 5,
                          terminations=[False] * 4 + [True], truncations=[False] * 5)]
    minari.create_dataset_from_buffers("other/unit-v0", bufs, env="InvertedPendulum-v5", data_format="hdf5",
                                       action_space=gym.spaces.Box(-1, 1, (1,)))
    minari.create_dataset_from_buffers("other/own-v0", bufs, env="InvertedPendulum-v5", data_format="hdf5")
    with pytest.raises(BpdError, match=r"^other/unit-v0: its actions are declared within \[-1, 1\], the teacher's "
                                       r"\(InvertedPendulum-v5's\) within \[-3, 3\]"):
        teacher_labels(load_dataset("minari:other/unit-v0", 4, 1), teacher, "other/unit-v0")
    ds = teacher_labels(load_dataset("minari:other/own-v0", 4, 1), teacher, "other/own-v0")
    assert np.array_equal(ds.teacher_actions, teacher.act(ds.observations).astype(np.float32))


def test_the_content_hash_reads_a_dataset_kept_a_directory_per_episode(store):
    """Minari's arrow format keeps each episode in a directory of data/: the hash covers their files (it
    tried to read the directories as files); a flat hdf5 dataset's hash is over the same names as before."""
    import hashlib

    from training.minari_io import content_hash

    data = store / "other" / "arrow-v0" / "data"
    (data / "0").mkdir(parents=True)
    (data / "metadata.json").write_text("{}")
    (data / "0" / "data.arrow").write_bytes(b"episode 0")
    first = content_hash("minari:other/arrow-v0")
    (data / "0" / "data.arrow").write_bytes(b"episode 0, changed")
    assert content_hash("minari:other/arrow-v0") != first
    flat = store / "other" / "flat-v0" / "data"
    flat.mkdir(parents=True)
    (flat / "main_data.hdf5").write_bytes(b"steps")
    (flat / "metadata.json").write_text("{}")
    h = hashlib.sha256()
    for name, body in ((b"main_data.hdf5", b"steps"), (b"metadata.json", b"{}")):
        h.update(name)
        h.update(body)
    assert content_hash("other/flat-v0") == h.hexdigest()


def test_compress_takes_a_minari_dataset_and_names_a_missing_one(tiny_pipeline, store):
    """`bpd compress --dataset minari:ID` is checked as distill checks it: a dataset in the store passes (and its
    runs are given the id, not a path made of it), a missing one is one line naming the store."""
    from bpd.errors import BpdError
    from bpd_app.compress import CompressConfig, _check

    _collect(tiny_pipeline, "--out", "bpd/comp-v0", "--format", "minari")
    teacher = str(tiny_pipeline / "teacher.npz")
    assert _check(CompressConfig(teacher=teacher, dataset="minari:bpd/comp-v0", methods=["bpd"])) == ["bpd"]
    with pytest.raises(BpdError, match="bpd/gone-v0: not in Minari's local store"):
        _check(CompressConfig(teacher=teacher, dataset="minari:bpd/gone-v0", methods=["bpd"]))


def test_a_collect_stopped_while_minari_writes_leaves_no_dataset_under_its_id(store, monkeypatch):
    """Before, `bpd collect --format minari` stopped half way (Ctrl-C, kill) left a dataset of 0 episodes under its id
    in the store: the next collect refused it as existing, distill read 'has no episodes' or 'bad object header', and
    Minari listed it. Now it is made in a hidden directory of the store and moved in once whole."""
    from types import SimpleNamespace

    from minari.dataset._storages.hdf5_storage import HDF5Storage

    from training.collect import load_dataset
    from training.minari_io import local_path, write_minari

    n = 12
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(n, 4)).astype(np.float32)
    ds = SimpleNamespace(observations=obs, next_observations=obs + 1, actions=np.zeros((n, 1), np.float32),
                         teacher_actions=np.ones((n, 1), np.float32), rewards=np.ones(n, np.float32),
                         terminals=np.array([0] * 5 + [1] + [0] * 6, np.float32),
                         truncations=np.array([0] * 11 + [1], np.float32),
                         meta={"env_id": "InvertedPendulum-v5", "steps": n, "format": "bpd-dataset"})
    write = HDF5Storage.update_episodes

    def stopped(self, episodes):
        write(self, list(episodes)[:1])  # the first episode on disk, then the stop
        raise KeyboardInterrupt

    monkeypatch.setattr(HDF5Storage, "update_episodes", stopped)
    with pytest.raises(KeyboardInterrupt):
        write_minari(ds, "bpd/stopped-v0")
    assert not local_path("bpd/stopped-v0").exists() and list(minari.list_local_datasets()) == []
    assert sorted(p.name for p in store.rglob("*")) == ["bpd", "namespace_metadata.json"]  # no stage left
    assert os.environ["MINARI_DATASETS_PATH"] == str(store)
    monkeypatch.setattr(HDF5Storage, "update_episodes", write)
    import tempfile
    stages = []
    made = tempfile.mkdtemp
    monkeypatch.setattr(tempfile, "mkdtemp", lambda **kw: stages.append(kw.get("dir")) or made(**kw))
    assert write_minari(ds, "bpd/stopped-v0") == "bpd/stopped-v0"  # the same id again: written whole
    assert stages == [local_path("bpd/stopped-v0").parent]  # staged beside its place: one rename, one file system
    back = load_dataset("minari:bpd/stopped-v0", 4, 1)
    assert len(back) == n and back.meta["episodes"] == 2 and np.array_equal(back.observations, obs)
    assert list(minari.list_local_datasets()) == ["bpd/stopped-v0"]


def test_a_store_named_by_a_relative_path_takes_a_dataset(tmp_path, monkeypatch):
    """Before, with MINARI_DATASETS_PATH relative (benchmarks/minari_roundtrip.py --work DIR, a user's `store`),
    `bpd collect --format minari` failed: its stage was a relative path Minari joined to its own a second time
    ('store/bpd/.bpd-collect-*/bpd/t-v0/data/store/bpd/.../main_data.hdf5: No such file or directory'). Now the stage
    is absolute and the dataset lands under the relative store, where Minari reads it."""
    from types import SimpleNamespace

    from training.collect import load_dataset
    from training.minari_io import write_minari

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MINARI_DATASETS_PATH", "store")
    n = 6
    obs = np.arange(n * 4, dtype=np.float32).reshape(n, 4)
    ds = SimpleNamespace(observations=obs, next_observations=obs + 1, actions=np.zeros((n, 1), np.float32),
                         teacher_actions=np.ones((n, 1), np.float32), rewards=np.ones(n, np.float32),
                         terminals=np.zeros(n, np.float32), truncations=np.array([0] * 5 + [1], np.float32),
                         meta={"env_id": "InvertedPendulum-v5", "steps": n, "format": "bpd-dataset"})
    assert write_minari(ds, "bpd/rel-v0") == "bpd/rel-v0"
    assert (tmp_path / "store" / "bpd" / "rel-v0" / "data" / "main_data.hdf5").is_file()
    assert sorted(p.name for p in (tmp_path / "store" / "bpd").iterdir()) == ["namespace_metadata.json", "rel-v0"]
    back = load_dataset("minari:bpd/rel-v0", 4, 1)
    assert len(back) == n and np.array_equal(back.observations, obs)


def test_an_id_minari_refuses_is_refused_before_the_rollout(store):
    """Before, bpd's id pattern took a dot in a name and a one-letter namespace, which Minari refuses: `bpd collect
    --format minari --out a/b-v0` rolled the teacher out, then died in Minari with an internal error (exit 70). Now
    bpd's pattern is Minari's: such an id is one line before anything runs, and every id bpd takes Minari takes."""
    from minari.dataset.minari_dataset import parse_dataset_id

    from bpd.errors import BpdError
    from training.minari_io import dataset_id

    for bad in ("a/b-v0", "bpd/my.data-v0", "bpd/x.y/z-v0", "bpd/name"):
        with pytest.raises(BpdError, match="is not a Minari dataset id"):
            dataset_id(bad)
    for good in ("bpd/hopper-teacher-v0", "hopper-v1", "ab/c_d-v12", "bpd/mujoco/hopper-v0", "minari:bpd/x-v0"):
        assert parse_dataset_id(dataset_id(good))[2] >= 0
    teacher = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "teachers", "InvertedPendulum-v5.npz")
    p = run_bpd("collect", "--teacher", teacher, "--out", "a/b-v0", "--format", "minari", "--steps", "5",
                "--no-progress", check=False)
    lines = p.stderr.strip().splitlines()
    assert p.returncode not in (0, 70) and len(lines) == 1 and "'a/b-v0' is not a Minari dataset id" in lines[0], \
        p.stderr


def test_a_dataset_recorded_through_a_transforming_wrapper_is_refused(store):
    """Another tool's dataset recorded on InvertedPendulum-v5 behind RescaleAction(-1, 1) read with actions in [-1, 1]:
    distill clipped the teacher's labels (in [-3, 3]) to that range and the student, run on the bare environment,
    pushed at most a third of its force. Now one line names the wrapper; a bookkeeping wrapper (episode statistics)
    passes."""
    import gymnasium as gym
    from minari.data_collector import EpisodeBuffer

    from bpd.errors import BpdError
    from training.collect import load_dataset

    rng = np.random.default_rng(0)

    def make(ds_id, env):
        bufs = [EpisodeBuffer(id=0, observations=rng.normal(size=(6, 4)), actions=rng.uniform(-1, 1, (5, 1)),
                              rewards=[1.0] * 5, terminations=[False] * 4 + [True], truncations=[False] * 5)]
        minari.create_dataset_from_buffers(ds_id, bufs, env=env, data_format="hdf5")

    make("other/rescaled-v0", gym.wrappers.RescaleAction(gym.make("InvertedPendulum-v5"), -1.0, 1.0))
    with pytest.raises(BpdError, match=r"^Minari dataset other/rescaled-v0: recorded through wrappers bpd does not "
                                       r"apply \(RescaleAction\): its observations or actions may not be "
                                       r"InvertedPendulum-v5's"):
        load_dataset("minari:other/rescaled-v0")
    make("other/stats-v0", gym.wrappers.RecordEpisodeStatistics(gym.make("InvertedPendulum-v5")))
    ds = load_dataset("minari:other/stats-v0", 4, 1)
    assert len(ds) == 5 and ds.action_low.tolist() == [-3.0] and ds.observations.dtype == np.float32


def test_a_rollout_on_ones_own_rig_is_written_as_a_minari_dataset(store, tmp_path, monkeypatch):
    """`bpd collect --format minari` of a teacher of `rig:PATH` (a rig YAML of one's own) ended in an internal error
    (Minari looked the id up as a Gymnasium id: NameNotFound). Known answer: it is written and reads back as that
    rig's environment with its arrays, and Minari's own reader recovers the rig's plant from the dataset."""
    import shutil
    from types import SimpleNamespace

    from firmware_host.rig import load_rig
    from training.collect import load_dataset
    from training.minari_io import write_minari

    shutil.copy(load_rig("rotary-pendulum").path, tmp_path / "my.yaml")
    monkeypatch.chdir(tmp_path)
    n = 6
    obs = np.arange(4 * n, dtype=np.float32).reshape(n, 4)
    ds = SimpleNamespace(observations=obs, next_observations=obs + 1, actions=np.zeros((n, 1), np.float32),
                         teacher_actions=np.ones((n, 1), np.float32), rewards=np.ones(n, np.float32),
                         terminals=np.zeros(n, np.float32), truncations=np.array([0] * 5 + [1], np.float32),
                         meta={"env_id": "rig:my.yaml", "steps": n, "format": "bpd-dataset"})
    assert write_minari(ds, "bpd/my-rig-v0") == "bpd/my-rig-v0"
    back = load_dataset("minari:bpd/my-rig-v0", 4, 1)
    assert back.meta["env_id"] == "rig:my.yaml" and np.array_equal(back.observations, obs)
    env = minari.load_dataset("bpd/my-rig-v0").recover_environment()
    assert type(env.unwrapped).__name__ == "SwingUpEnv" and env.observation_space.shape == (4,)


@pytest.mark.parametrize("env_id, name", [("firmware_host.rig:bpd/desktop-cartpole-v0", "RigEnv"),
                                          ("firmware_host.rig:bpd/rotary-pendulum-v0", "SwingUpEnv")])
def test_a_rollout_on_a_shipped_rig_is_written_as_a_minari_dataset(store, env_id, name):
    """`bpd collect --format minari` of the committed desktop-cartpole teacher ended in an internal error: Minari
    refuses an id with a module to import first ('Malformed environment ID'), and the balance rigs' environments
    were registered by their class, which a dataset's spec cannot hold. Known answer: both shipped kinds of rig are
    written and read back under their ids, and Minari's reader recovers the plant."""
    from types import SimpleNamespace

    from training.collect import load_dataset
    from training.minari_io import write_minari

    n, od = 6, 4
    obs = np.arange(od * n, dtype=np.float32).reshape(n, od)
    ds = SimpleNamespace(observations=obs, next_observations=obs + 1, actions=np.zeros((n, 1), np.float32),
                         teacher_actions=np.ones((n, 1), np.float32), rewards=np.ones(n, np.float32),
                         terminals=np.zeros(n, np.float32), truncations=np.array([0] * 5 + [1], np.float32),
                         meta={"env_id": env_id, "steps": n, "format": "bpd-dataset"})
    ds_id = f"bpd/{name.lower()}-v0"
    assert write_minari(ds, ds_id) == ds_id
    assert load_dataset(f"minari:{ds_id}", od, 1).meta["env_id"] == env_id
    assert type(minari.load_dataset(ds_id).recover_environment().unwrapped).__name__ == name


def test_the_round_trip_benchmark_records_the_options_it_ran_with(benchmark_script):
    """minari_roundtrip.json recorded `python benchmarks/minari_roundtrip.py` whatever its seeds, steps and episodes:
    a run with others wrote a file whose command gives different figures. Known answer: the defaults record the bare
    command, other values their options, the work directory none (it changes no figure)."""
    m = benchmark_script("minari_roundtrip")
    ap = m.parser()
    assert m.command(ap, ap.parse_args([])) == "python benchmarks/minari_roundtrip.py"
    a = ap.parse_args(["--seeds", "4", "5", "--steps", "300", "--episodes", "30", "--work", "/tmp/w"])
    assert m.command(ap, a) == "python benchmarks/minari_roundtrip.py --seeds 4 5 --steps 300"
