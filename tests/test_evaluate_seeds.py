"""`bpd evaluate` reports on no seed that chose the model: a teacher's training evaluations (10000 + 100 x its seed
on, inside the reporting range below 100000) and a run's periodic and selection evaluations are refused."""

import json

import pytest

from bpd.errors import BpdError
from bpd_app.evaluate import EvaluateConfig, run_evaluate
from tests.conftest import ROOT, run_bpd

TEACHER = str(ROOT / "benchmarks" / "teachers" / "InvertedPendulum-v5.npz")  # chosen on seeds 10000..10004


def test_a_committed_teachers_training_seeds_are_refused_and_the_others_reported():
    with pytest.raises(BpdError, match=r"seeds 9995\.\.10004 overlap 10000\.\.10004, those of its training "):
        run_evaluate(EvaluateConfig(model=TEACHER, episodes=10, seed=9995))
    with pytest.raises(BpdError, match=r"seeds 10004\.\.10006 overlap 10000\.\.10004"):
        run_evaluate(EvaluateConfig(model=TEACHER, robustness=True, seed=10004))
    r = run_evaluate(EvaluateConfig(model=TEACHER, episodes=1, seed=10005))  # the first seed after them
    assert r["seeds"] == [10005, 10005]
    assert run_evaluate(EvaluateConfig(model=TEACHER, episodes=1, seed=9999))["seeds"] == [9999, 9999]


def test_the_command_says_so_in_one_line():
    p = run_bpd("evaluate", TEACHER, "--seed", "10002", "--episodes", "1", check=False)
    assert p.returncode != 0 and "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert "overlap 10000..10004" in p.stderr


def test_a_runs_periodic_and_selection_seeds_are_refused(tiny_pipeline):
    run = tiny_pipeline / "run"
    summary = json.loads((run / "summary.json").read_text())
    lo, hi = summary["train_eval_seeds"]
    with pytest.raises(BpdError, match="the run's periodic evaluations"):
        run_evaluate(EvaluateConfig(model=str(run), episodes=1, seed=hi))
    first = summary["selection"]["select_seeds"][0]
    with pytest.raises(BpdError, match="the run's selection"):
        run_evaluate(EvaluateConfig(model=str(run / "student.pt"), episodes=1, seed=first))
    assert run_evaluate(EvaluateConfig(model=str(run), episodes=1, seed=hi + 1))["seeds"] == [hi + 1, hi + 1]


def test_an_exports_source_seeds_are_refused_where_the_source_is_there(tmp_path):
    """Known answer: an export of the committed InvertedPendulum teacher (its export.json names the source) evaluated
    on 10000..10004, the seeds that chose that teacher, went through: the export's file records no seeds. Its source's
    records are read where the source is there (the C kernel and the ONNX file alike); a source gone leaves nothing
    to check, and so does a source made again in its place (its content hash is not the one exported: another
    model's seeds are not the export's)."""
    import shutil

    from bpd.io import sha256_file
    from tests.conftest import pendulum_export

    exp = tmp_path / "export"
    shutil.copytree(pendulum_export(), exp)
    info = json.loads((exp / "export.json").read_text()) | {"source_sha256": sha256_file(TEACHER)}
    (exp / "export.json").write_text(json.dumps(info | {"source": TEACHER}))
    for model in (exp, exp / "policy.onnx"):
        with pytest.raises(BpdError, match=r"overlap 10000\.\.10004, those of its training evaluations"):
            run_evaluate(EvaluateConfig(model=str(model), episodes=1, seed=10003))
    (exp / "export.json").write_text(json.dumps(info | {"source": str(tmp_path / "gone.npz")}))
    assert run_evaluate(EvaluateConfig(model=str(exp), episodes=1, seed=10003))["seeds"] == [10003, 10003]
    remade = tmp_path / "teacher.npz"  # the exported teacher's path, then another teacher made in its place
    shutil.copy(TEACHER, remade)
    (exp / "export.json").write_text(json.dumps(info | {"source": str(remade)}))
    with pytest.raises(BpdError, match=r"overlap 10000\.\.10004"):  # the file exported: its seeds are read
        run_evaluate(EvaluateConfig(model=str(exp), episodes=1, seed=10003))
    shutil.copy(ROOT / "benchmarks" / "teachers" / "InvertedDoublePendulum-v5.npz", remade)
    assert run_evaluate(EvaluateConfig(model=str(exp), episodes=1, seed=10003))["seeds"] == [10003, 10003]


def test_a_compress_hand_overs_selection_and_further_seeds_are_refused(tmp_path):
    """Known answer: `bpd compress` hands over OUT/student.pt, a copy of `student select`'s file, chosen on the
    selection seeds that file records (200000..200002 at --episodes 3) and judged again on compress's further ones
    (200010..200014, compress.json); no summary.json is beside it, so `bpd evaluate OUT/student.pt --seed 200000`
    reported the very return it was picked for. Both ranges are refused now; the seeds between and after are not."""
    import numpy as np
    import torch

    from training.student import BayesianStudent, save_student

    torch.manual_seed(0)
    meta = {"env_id": "InvertedPendulum-v5", "obs_dim": 4, "act_dim": 1, "hidden": [4], "activation": "tanh",
            "threshold": 3.0, "log_alpha_clip": 8.0, "selection": {"select_seeds": [200000, 200002]}}
    stats = {"obs_mean": np.zeros(4, np.float32), "obs_std": np.ones(4, np.float32),
             "action_low": -3 * np.ones(1, np.float32), "action_high": 3 * np.ones(1, np.float32)}
    save_student(tmp_path / "student.pt", BayesianStudent(4, 1, [4]), meta, stats)
    (tmp_path / "compress.json").write_text(json.dumps({"chosen": "bpd", "rows": [
        {"method": "l1-threshold"}, {"method": "bpd", "confirm": {"first_seed": 200010, "episodes": 5}}]}))
    model = str(tmp_path / "student.pt")
    with pytest.raises(BpdError, match=r"overlap 200000\.\.200002, those of its selection \(bpd student select\)"):
        run_evaluate(EvaluateConfig(model=model, episodes=1, seed=200002))
    with pytest.raises(BpdError, match=r"overlap 200010\.\.200014, those of bpd compress's further selection"):
        run_evaluate(EvaluateConfig(model=model, episodes=2, seed=200009))
    for seed in (200003, 200015):
        assert run_evaluate(EvaluateConfig(model=model, episodes=1, seed=seed))["seeds"] == [seed, seed]


def test_a_compress_students_run_seeds_and_its_selected_file_are_refused(tmp_path):
    """Known answer: the student compress handed over (OUT/student.pt) is a candidate its run kept by its periodic
    evaluations (100000..100004 in OUT/bpd/summary.json), which went through for OUT/student.pt, no run beside it; and
    the chosen method's OUT/bpd/selected.pt, the same student, went through on compress's further episodes
    (200010..200014). Both are refused now; another method's selected.pt is not refused compress's further seeds."""
    import shutil

    import numpy as np
    import torch

    from training.student import BayesianStudent, save_student

    torch.manual_seed(0)
    meta = {"env_id": "InvertedPendulum-v5", "obs_dim": 4, "act_dim": 1, "hidden": [4], "activation": "tanh",
            "threshold": 3.0, "log_alpha_clip": 8.0, "selection": {"select_seeds": [200000, 200002]}}
    stats = {"obs_mean": np.zeros(4, np.float32), "obs_std": np.ones(4, np.float32),
             "action_low": -3 * np.ones(1, np.float32), "action_high": 3 * np.ones(1, np.float32)}
    for m in ("bpd", "l1-threshold"):
        (tmp_path / m).mkdir()
        save_student(tmp_path / m / "selected.pt", BayesianStudent(4, 1, [4]), meta, stats)
        (tmp_path / m / "summary.json").write_text(json.dumps({"train_eval_seeds": [100000, 100004]}))
    shutil.copy(tmp_path / "bpd" / "selected.pt", tmp_path / "student.pt")
    (tmp_path / "compress.json").write_text(json.dumps({"chosen": "bpd", "rows": [
        {"method": "l1-threshold", "run": str(tmp_path / "l1-threshold"),
         "student": str(tmp_path / "l1-threshold" / "selected.pt")},
        {"method": "bpd", "run": str(tmp_path / "bpd"), "student": str(tmp_path / "bpd" / "selected.pt"),
         "confirm": {"first_seed": 200010, "episodes": 5}}]}))
    with pytest.raises(BpdError, match=r"overlap 100000\.\.100004, those of its run's periodic evaluations"):
        run_evaluate(EvaluateConfig(model=str(tmp_path / "student.pt"), episodes=1, seed=100002))
    with pytest.raises(BpdError, match=r"overlap 200010\.\.200014, those of bpd compress's further selection"):
        run_evaluate(EvaluateConfig(model=str(tmp_path / "bpd" / "selected.pt"), episodes=1, seed=200012))
    other = run_evaluate(EvaluateConfig(model=str(tmp_path / "l1-threshold" / "selected.pt"), episodes=1, seed=200012))
    assert other["seeds"] == [200012, 200012]


def test_a_run_seeds_episodes_stay_in_its_block_of_seeds():
    """Run seed s selects on 200000 + 1000 s on (its training evaluations: 100000 + 1000 s on), so seed 0's block ends
    at 200999 and seed 1's starts at 201000. More episodes than the block holds, or compress's confirmation after the
    selection's, ran on into the next seed's block, and run seed 100's training evaluations were seed 0's selection
    episodes: each is refused in one line naming the largest value allowed."""
    from training.envs import select_eval_seed, train_eval_seed
    from training.seed_blocks import MAX_RUN_SEED, SEED_BLOCK

    assert (select_eval_seed(0), select_eval_seed(1), train_eval_seed(1)) == (200_000, 201_000, 101_000)
    assert SEED_BLOCK == 1000 and MAX_RUN_SEED == 99 and train_eval_seed(99) + 999 == 199_999 < select_eval_seed(0)
    cases = [  # (command, the largest allowed value, refused as)
        (["student", "select", "nowhere", "--episodes", "1001"], "--episodes must be at most 1000 (got 1001)"),
        (["distill", "--teacher", "t", "--dataset", "d", "--select-episodes", "1001"],
         "--select-episodes must be at most 1000 (got 1001)"),
        (["distill", "--teacher", "t", "--dataset", "d", "--eval-episodes", "1001"],
         "--eval-episodes must be at most 1000 (got 1001)"),
        (["distill", "--teacher", "t", "--dataset", "d", "--seed", "100"], "--seed must be between 0 and 99 (got 100)"),
        (["compress", "--teacher", "t", "--dataset", "d", "--seed", "100"],
         "--seed must be between 0 and 99 (got 100)"),
        # bpd's runs select on 10 episodes (200000..200009): the confirmation's 990 are 200010..200999
        (["compress", "--teacher", "t", "--dataset", "d", "--methods", "bpd", "--confirm", "991"],
         "--confirm must be at most 990 (got 991): the confirmation after 10 selection episodes would run past"),
        # compress's own 40 selection episodes first: 200040..200999 left
        (["compress", "--teacher", "t", "--dataset", "d", "--methods", "bpd", "--episodes", "40", "--confirm", "961"],
         "--confirm must be at most 960 (got 961)"),
        # a dense network chosen as the -sure cuts are selects on 30 (its runs' --select-episodes): 200030..200999 left
        (["compress", "--teacher", "t", "--dataset", "d", "--methods", "bpd", "dense-c50-sure", "--confirm", "971"],
         "--confirm must be at most 970 (got 971): the confirmation after 30 selection episodes"),
    ]
    for argv, message in cases:
        p = run_bpd(*argv, check=False)
        assert p.returncode == 1 and p.stderr.count("\n") == 1 and message in p.stderr, (argv, p.stderr)
    for argv in (["compress", "--teacher", "t", "--dataset", "d", "--methods", "bpd", "--confirm", "990"],
                 ["student", "select", "nowhere", "--episodes", "1000"]):  # the largest: on to the files' checks
        p = run_bpd(*argv, check=False)
        assert p.returncode == 1 and "must be" not in p.stderr and "no such" in p.stderr, (argv, p.stderr)


def test_a_teacher_seeds_evaluations_stay_in_its_block_of_seeds(tmp_path):
    """A teacher of seed s is evaluated in training on 10000 + 100 s on and checked at the end on 50000 + 100 s on:
    more than 100 episodes ran into seed s + 1's block, and seed 400's training evaluations were seed 0's final
    checks (seeds up to 2^31 - 1 were taken; seed 900's ran into 100000, the students' training evaluations). Each is
    refused in one line naming the largest value allowed; the largest itself goes on to the next check."""
    from training.teacher_config import FINAL_EVAL_SEED, MAX_TEACHER_SEED, TRAIN_EVAL_SEED

    assert MAX_TEACHER_SEED == 399 and TRAIN_EVAL_SEED + 100 * 399 + 99 == 49_999 < FINAL_EVAL_SEED
    assert FINAL_EVAL_SEED + 100 * 399 + 99 == 89_999 < 100_000
    base = ["teacher", "train", "--env", "NoSuchEnv-v0", "--out", str(tmp_path / "t.npz")]  # refused after them
    for extra, message in ((["--seed", "400"], "--seed must be between 0 and 399 (got 400)"),
                           (["--eval-episodes", "101"], "--eval-episodes must be at most 100 (got 101)"),
                           (["--final-episodes", "101"], "--final-episodes must be at most 100 (got 101)")):
        p = run_bpd(*base, *extra, check=False)
        assert p.returncode == 1 and p.stderr.count("\n") == 1 and message in p.stderr, (extra, p.stderr)
    p = run_bpd(*base, "--seed", "399", "--eval-episodes", "100", "--final-episodes", "100", check=False)
    assert p.returncode == 1 and "NoSuchEnv-v0" in p.stderr and "must be" not in p.stderr, p.stderr
