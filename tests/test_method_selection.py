"""The selection episodes before compress's confirmation have two sources: each method's declaration in the registry
(Method.select_episodes, read by `compress --confirm`'s check before any run trains) and each run's record of its own
selection (its config.json, read when the confirmation runs). Every registered method's command is built here against
a made-up run root holding the few files the methods read of their needed cells, and parsed as `bpd` parses it."""

import json

import numpy as np
import pytest
import torch

from bpd.config import from_namespace
from bpd_app.methods import METHODS, CellInputs
from bpd_app.parser import _CheckParser, build_parser, room_commands
from training.distill_config import SELECT_EPISODES

ENV, SEED = "InvertedPendulum-v5", 0


def _config(argv: list[str]):
    """The configuration `bpd` builds from a command line (what a run records in its config.json)."""
    import importlib

    cmds = room_commands()
    name = " ".join(argv[:2]) if " ".join(argv[:2]) in cmds else argv[0]
    mod, cls = cmds[name][0].split(":")
    return from_namespace(getattr(importlib.import_module(mod), cls),
                          build_parser(cmds, argv, _CheckParser).parse_args(argv))


@pytest.fixture(scope="module")
def run_root(tmp_path_factory) -> tuple:
    """A run root of one environment and seed: a teacher, the bpd and l1-threshold cells' student files, the
    reselected cell's config.json; and the needed cells' results as the runner hands them to a method."""
    from bpd_app.methods import RESELECTED, collapsed_student
    from firmware_host.measure.dsp_meter import mask_cycles
    from training.student import BayesianStudent, save_student
    from training.teacher import Teacher

    tmp_path = tmp_path_factory.mktemp("root")
    rng = np.random.default_rng(0)
    teacher = tmp_path / "teacher.npz"
    Teacher([rng.normal(size=(8, 4)).astype(np.float32), rng.normal(size=(1, 8)).astype(np.float32)],
            [np.zeros(8, np.float32), np.zeros(1, np.float32)], "relu", "tanh", np.zeros(4, np.float32),
            np.ones(4, np.float32), -3 * np.ones(1, np.float32), 3 * np.ones(1, np.float32), env_id=ENV).save(teacher)
    meta = {"env_id": ENV, "obs_dim": 4, "act_dim": 1, "hidden": [32, 32], "activation": "tanh", "threshold": 3.0,
            "log_alpha_clip": 8.0}
    stats = {"obs_mean": np.zeros(4, np.float32), "obs_std": np.ones(4, np.float32),
             "action_low": -3 * np.ones(1, np.float32), "action_high": 3 * np.ones(1, np.float32)}
    torch.manual_seed(0)
    deps = {}
    for label in ("bpd", "l1-threshold"):
        run = tmp_path / ENV / label / f"seed{SEED}" / "run"
        run.mkdir(parents=True)
        save_student(run / "student.pt", BayesianStudent(4, 1, [32, 32]), meta, stats)
        deps[label] = {"params_nonzero": 100, "train": {"hidden": [32, 32]}}
    # the bpd cell's student and its integer kernel's cycles (compress's record; the runner's is its export)
    bpd = tmp_path / ENV / "bpd" / f"seed{SEED}" / "run" / "student.pt"
    layers = mask_cycles([w != 0 for w in collapsed_student(bpd).weights])
    deps["bpd"] |= {"student": str(bpd), "bench": {"integer": {"cycles": layers + 10.0}},
                    "export": {"widths": [4, 32, 32, 1]}}
    reselected = tmp_path / ENV / RESELECTED / f"seed{SEED}" / "run"
    reselected.mkdir(parents=True)
    (reselected / "config.json").write_text(json.dumps({"select_tol": 0.02}))
    deps[RESELECTED] = {}
    return tmp_path, str(teacher), deps


def recorded_selection(argv: list[str]) -> int | None:
    """The selection episodes the run of this command records: distill's config.json select_episodes, a `student
    select`'s selection seeds (its --episodes); None for a run that chooses no student on selection episodes."""
    cfg = _config(argv)
    if argv[0] == "distill":
        return cfg.select_episodes
    if argv[:2] == ["student", "select"]:
        return cfg.episodes
    assert not any("select" in k for k in vars(cfg)), f"bpd {' '.join(argv[:2])} has selection options"
    return None


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_methods_run_records_the_selection_episodes_the_registry_declares(name, run_root):
    """Known answer per method: a run whose command sets --select-episodes (or a reselection's --episodes) records
    that many, which the registry must declare (the -sure cuts and dense networks 30, the -ema cuts and the reselection
    100); a run that sets none records distill's default (10) and the registry declares None (compress reads it as
    that default); a baseline or online SAC run selects on no episodes and declares None. dense-c50-sure declared
    None while its runs selected on 30, so compress's --confirm check counted 10 (db565ef3)."""
    tmp_path, teacher, deps = run_root
    m = METHODS[name]
    out = tmp_path / ENV / name / f"seed{SEED}" / "run"
    c = CellInputs(ENV, SEED, teacher, str(tmp_path / "data.npz"), out, {}, {n: deps[n] for n in m.needs},
                   {"train": {"steps": 1000}})
    recorded = recorded_selection(m.command(c))
    if recorded is None:
        assert m.select_episodes is None
    else:
        assert recorded == (m.select_episodes or SELECT_EPISODES)


def test_compress_checks_its_confirmation_after_the_selection_a_begun_run_records(tmp_path):
    """Known answer: bpd's runs select on 10 episodes, so --confirm 990 fills the block (200010..200999); a bpd run
    already under --out that recorded 100 (begun by hand, or by a version whose default was other) is not trained
    again, and its confirmation, which reads the run's record, started at 200100 and ran 90 episodes into run seed 1's
    block: the check now reads that record too, and refuses in one line."""
    from tests.conftest import run_bpd

    argv = ["compress", "--teacher", "t", "--dataset", "d", "--methods", "bpd", "--out", str(tmp_path / "out")]
    p = run_bpd(*argv, "--confirm", "990", check=False)
    assert p.returncode == 1 and "must be" not in p.stderr and "no such file" in p.stderr  # on to the files' checks
    (tmp_path / "out" / "bpd").mkdir(parents=True)
    (tmp_path / "out" / "bpd" / "config.json").write_text(json.dumps({"select_episodes": 100}))
    p = run_bpd(*argv, "--confirm", "990", check=False)
    assert p.returncode == 1 and p.stderr.count("\n") == 1 and (
        "--confirm must be at most 900 (got 990): the confirmation after 100 selection episodes") in p.stderr
    p = run_bpd(*argv, "--confirm", "900", check=False)
    assert p.returncode == 1 and "must be" not in p.stderr and "no such file" in p.stderr
    for bad in ([100], {"select_episodes": "many"}):  # valid JSON, not a run's configuration: was a traceback
        (tmp_path / "out" / "bpd" / "config.json").write_text(json.dumps(bad))
        p = run_bpd(*argv, "--confirm", "900", check=False)
        assert p.returncode == 1 and p.stderr.count("\n") == 1 and "config.json: not a run configuration (no whole " \
            "select_episodes of at least 1); remove the run directory to train it again" in p.stderr, p.stderr
