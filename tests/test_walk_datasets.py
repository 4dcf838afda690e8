"""What a user meets bringing datasets to distill and multitask: a dataset of another environment whose sizes
match the teacher's (Walker2d's and HalfCheetah's: 17 observations, 6 actions) was taken, the teacher asked for
actions at states of a task it never saw."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bpd.errors import BpdError
from tests.conftest import run_bpd
from training.collect import Dataset, save_dataset

REPO = Path(__file__).resolve().parents[1]
TEACHERS = REPO / "benchmarks" / "teachers"


def _dataset(env_id: str, od: int, ad: int, teacher=None, n: int = 40, labelled: bool = True,
             bound: float | None = None) -> Dataset:
    """A dataset of env_id, labelled by teacher where given, its action bounds the teacher's (+-bound, else +-1)."""
    high = np.full(ad, bound or 1.0, np.float32) if teacher is None or bound is not None else teacher.action_high
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(n, od)).astype(np.float32)
    acts = rng.uniform(-1, 1, (n, ad)).astype(np.float32)
    meta = {"format": "bpd-dataset", "format_version": 1, "env_id": env_id, "obs_dim": od, "act_dim": ad}
    if not labelled:
        meta["labels"] = "the dataset's actions (no teacher actions recorded)"
    return Dataset(meta=meta, observations=obs, actions=acts,
                   teacher_actions=teacher.act(obs).astype(np.float32) if teacher is not None else acts,
                   rewards=np.ones(n, np.float32), next_observations=obs, terminals=np.zeros(n, np.float32),
                   truncations=np.r_[np.zeros(n - 1), 1].astype(np.float32), obs_mean=obs.mean(0),
                   obs_std=obs.std(0) + 1e-3, action_low=-high, action_high=high)


def test_a_dataset_of_another_environment_is_refused_unless_the_teacher_collected_it():
    """Known answers: another tool's HalfCheetah data (no labels) given with an InvertedPendulum teacher of the same
    sizes was labelled by it and distilled; now one line names both environments. The teacher's own data collected on
    another environment (`bpd collect --env`: its labels the teacher's) passes, and `module:ID` is `ID`."""
    from tests.test_teacher import hand_teacher
    from training.collect import check_task, teacher_labels

    t = hand_teacher()  # InvertedPendulum-v5, 2 -> 1, bounds [-3, 3]
    with pytest.raises(BpdError, match=r"^other/cheetah-v0: a dataset of HalfCheetah-v5, but the teacher is of "
                                       r"InvertedPendulum-v5 and did not collect it; give a dataset of the "
                                       r"teacher's environment$"):
        teacher_labels(_dataset("HalfCheetah-v5", 2, 1, labelled=False), t, "other/cheetah-v0")
    check_task(_dataset("bpd/other-v0", 2, 1, teacher=t), t, "d.npz")  # collected by this teacher there
    with pytest.raises(BpdError, match="a dataset of bpd/other-v0"):
        check_task(_dataset("bpd/other-v0", 2, 1), t, "d.npz")  # labelled, but not by this teacher
    t.env_id = "firmware_host.rig:bpd/desktop-cartpole-v0"
    check_task(_dataset("bpd/desktop-cartpole-v0", 2, 1, labelled=False, bound=3), t, "d")
    ds = teacher_labels(_dataset("InvertedPendulum-v5", 2, 1, labelled=False, bound=3), hand_teacher(), "d")
    assert ds.meta["labels"].startswith("the teacher's actions")


def test_multitask_refuses_datasets_given_out_of_the_teachers_order(tmp_path):
    """Known answer: --teachers Walker2d HalfCheetah --datasets cheetah walker trained the Walker2d teacher on
    HalfCheetah's states as task 'HalfCheetah-v5' (the sizes agree); now one line, and no run directory."""
    from training.multitask import MultiTaskConfig, train_multitask
    from training.teacher import load_teacher

    walker, cheetah = TEACHERS / "Walker2d-v5.npz", TEACHERS / "HalfCheetah-v5.npz"
    for name, env, t in (("w", "Walker2d-v5", walker), ("h", "HalfCheetah-v5", cheetah)):
        save_dataset(_dataset(env, 17, 6, teacher=load_teacher(t)), tmp_path / f"{name}.npz")
    cfg = dict(teachers=[str(walker), str(cheetah)], out=str(tmp_path / "run"), trunk=[8], steps=2, batch=4,
               eval_every=2, eval_episodes=1, progress=False)
    with pytest.raises(BpdError, match=r"^task 1: .*h\.npz: a dataset of HalfCheetah-v5, but the teacher is of "
                                       r"Walker2d-v5 and did not collect it; give --datasets in the order of "
                                       r"--teachers$"):
        train_multitask(MultiTaskConfig(datasets=[str(tmp_path / "h.npz"), str(tmp_path / "w.npz")], **cfg))
    assert not (tmp_path / "run").exists()
    p = run_bpd("baseline", "train", "--method", "kl", "--teacher", str(walker), "--dataset", str(tmp_path / "h.npz"),
                "--out", str(tmp_path / "b"), "--steps", "2", "--no-progress", check=False)
    assert p.returncode == 1 and p.stderr.strip().splitlines() == [
        f"bpd: error: {tmp_path / 'h.npz'}: a dataset of HalfCheetah-v5, but the teacher is of Walker2d-v5 and did "
        "not collect it; give a dataset of the teacher's environment"]


def test_multitask_resume_refuses_a_dataset_replaced_under_its_path(tmp_path):
    """Known answer: a multi-task run stopped, its dataset collected again under the same path, `--resume` went on
    training on the new data as if it were the run's. Now the content is recorded and compared, as distill does; the
    same content resumes."""
    import dataclasses
    import json

    from training.multitask import MultiTaskConfig, train_multitask
    from training.teacher import load_teacher

    paths = []
    for env, od in (("InvertedPendulum-v5", 4), ("InvertedDoublePendulum-v5", 9)):
        t = TEACHERS / f"{env}.npz"
        save_dataset(_dataset(env, od, 1, teacher=load_teacher(t)), tmp_path / f"{env}.npz")
        paths.append((str(t), str(tmp_path / f"{env}.npz")))
    cfg = MultiTaskConfig(teachers=[p[0] for p in paths], datasets=[p[1] for p in paths], out=str(tmp_path / "run"),
                          trunk=[8], steps=2, batch=4, eval_every=2, eval_episodes=1, progress=False)
    train_multitask(cfg)
    assert len(json.loads((tmp_path / "run" / "config.json").read_text())["dataset_sha256"]) == 2
    resume = dataclasses.replace(cfg, resume=True)
    assert train_multitask(resume)["steps"] == 2  # the same content: resumes
    ds = _dataset("InvertedPendulum-v5", 4, 1, teacher=load_teacher(paths[0][0]), n=60)
    save_dataset(ds, paths[0][1])
    with pytest.raises(BpdError, match=r"was started with a different configuration \(dataset_sha256\)"):
        train_multitask(resume)
    old = json.loads((tmp_path / "run" / "config.json").read_text())  # a run made before the content was recorded
    (tmp_path / "run" / "config.json").write_text(json.dumps({k: v for k, v in old.items() if "sha256" not in k}))
    assert train_multitask(resume)["steps"] == 2


def test_multitask_train_says_how_it_goes(tmp_path):
    """Known answer: `bpd multitask train` printed nothing until its end (20,000 steps by default) and had no progress
    bar for --no-progress to turn off; now a line at the start and, without a bar, one at each evaluation (distill's
    way)."""
    from training.teacher import load_teacher

    args = []
    for env, od in (("InvertedPendulum-v5", 4), ("InvertedDoublePendulum-v5", 9)):
        save_dataset(_dataset(env, od, 1, teacher=load_teacher(TEACHERS / f"{env}.npz")), tmp_path / f"{env}.npz")
        args.append((str(TEACHERS / f"{env}.npz"), str(tmp_path / f"{env}.npz")))
    p = run_bpd("multitask", "train", "--teachers", *[a[0] for a in args], "--datasets", *[a[1] for a in args],
                "--out", str(tmp_path / "run"), "--trunk", "8", "--steps", "4", "--batch", "4", "--eval-every", "2",
                "--eval-episodes", "1", "--no-progress")
    lines = p.stdout.strip().splitlines()
    assert lines[0] == (f"multitask: 2 tasks (InvertedPendulum-v5, InvertedDoublePendulum-v5), 4 steps, evaluated "
                        f"every 2, to {tmp_path / 'run'}")
    assert [ln.split(":")[0] for ln in lines[1:3]] == ["step 2", "step 4"] and "InvertedDoublePendulum-v5 " in lines[2]
    assert lines[3].startswith("multi-task student:") and len(lines) == 4


def test_another_tools_npz_is_told_the_way_in(tmp_path):
    """Known answer: a D4RL-style .npz (observations, actions, rewards, terminals; no bpd record) given to distill
    said 'not a bpd-dataset file (no metadata record)' and no more; the line now says how other tools' data comes in
    (as a Minari dataset), and the command ends with exit 1, one line."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d4rl.npz", observations=rng.normal(size=(10, 4)), actions=rng.normal(size=(10, 1)),
             rewards=np.ones(10), terminals=np.zeros(10))
    from training.collect import load_dataset

    with pytest.raises(BpdError, match=r"not a bpd-dataset file \(no metadata record\): .*--dataset minari:ID"):
        load_dataset(tmp_path / "d4rl.npz")
    r = run_bpd("distill", "--teacher", str(TEACHERS / "InvertedPendulum-v5.npz"), "--dataset",
                str(tmp_path / "d4rl.npz"), "--out", str(tmp_path / "run"), check=False)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "minari:ID" in r.stderr
