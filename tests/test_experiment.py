"""The grid runner, student selection, the threshold sweep and resumable teacher training."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bpd.errors import BpdError
from bpd_app.experiment.plan import load_plan
from bpd_app.experiment.stats import _bootstrap_ci, _iqm
from bpd_app.experiment.summary import d4rl_score
from bpd_app.methods import CellInputs, distill_command, flags
from tests.conftest import BPD, ROOT, run_bpd
from training.envs import Episodes
from training.selection import choose

TINY_DISTILL = {"steps": 200, "eval_every": 100, "eval_episodes": 1, "hidden": [8, 8], "critic_hidden": [16, 16],
                "select_episodes": 1, "checkpoint_every": 100}


def _plan(tmp: Path, teacher: Path, methods: dict, bench: bool = False, seeds=(0,)) -> Path:
    import yaml
    p = tmp / "plan.yaml"
    p.write_text(yaml.safe_dump({
        "name": "tiny", "envs": ["InvertedPendulum-v5"], "seeds": list(seeds),
        "teachers": {"InvertedPendulum-v5": str(teacher)},
        "dataset": {"steps": 500, "noise": 0.1, "seed": 900000}, "eval": {"episodes": 2, "seed": 0},
        "bench": bench, "methods": methods}))
    return p


# --------------------------------------------------------------------------- known answers


def test_iqm_is_the_quarter_trimmed_mean():
    assert _iqm(np.array([4.0, 1.0, 3.0, 2.0])) == pytest.approx(2.5)           # cuts 1 from each end
    assert _iqm(np.array([1.0, 2.0, 10.0])) == pytest.approx(13 / 3)            # n < 4: the mean
    assert _iqm(np.arange(8.0)) == pytest.approx(np.mean([2, 3, 4, 5]))
    lo, hi = _bootstrap_ci(np.array([1.0, 2.0, 3.0]))
    assert 1.0 <= lo <= 2.0 <= hi <= 3.0


def test_d4rl_score_uses_the_reference_returns():
    assert d4rl_score("Hopper-v5", 3234.3) == pytest.approx(100.0)
    assert d4rl_score("HalfCheetah-v5", -280.178953) == pytest.approx(0.0)
    assert d4rl_score("InvertedDoublePendulum-v5", 9000.0) is None


def test_episode_summary_quartiles_and_early_terminations():
    ep = Episodes([1.0, 2.0, 3.0, 4.0, 5.0], [10, 20, 30, 40, 50], [True, False, True, False, False], seed=7)
    s = ep.summary()
    assert (s["return_min"], s["return_q1"], s["return_median"], s["return_q3"]) == (1.0, 2.0, 3.0, 4.0)
    assert s["early_terminations"] == 2 and s["seeds"] == [7, 11] and s["length_min"] == 10


def test_summary_row_gives_spread_worst_seed_and_early_ends():
    """Three hand-made cell results of known returns: mean, std and worst seed of % of teacher, and the
    early ends summed, as the ablation tables print them."""
    from bpd_app.experiment.stats import aggregate
    from bpd_app.experiment.tables import summary_table

    def result(seed, ret, early):
        return {"env": "E", "label": "m", "seed": seed, "eval": {"return_mean": ret, "episodes": 30},
                "teacher": {"return_mean": 100.0, "params_total": 1000}, "return_vs_teacher": ret / 100.0,
                "d4rl_score": None, "params_nonzero": 50, "params_total": 500, "weights_removed_vs_teacher": 0.95,
                "early_terminations_where_teacher_finished": early, "export": None, "bench": None,
                "train": {"seconds": 10.0, "last_evals": [ret, ret, ret]}}

    rows = [{"env": "E", "label": "m", "seed": s, "state": "done", "result": result(s, r, e)}
            for s, r, e in [(0, 90.0, 1), (1, 96.0, 0), (2, 99.0, 2)]]
    rows.append({"env": "E", "label": "m", "seed": 3, "state": "pending", "result": None})
    (agg,) = aggregate(rows)
    assert agg["vs_teacher_mean"] == pytest.approx(0.95) and agg["vs_teacher_worst"] == pytest.approx(0.90)
    assert agg["vs_teacher_std"] == pytest.approx(np.std([0.90, 0.96, 0.99]))
    line = summary_table(None, [agg]).splitlines()[2]  # type: ignore[arg-type]
    assert "| 3/4 | 95.0 % +- 3.7 %; 90.0 % |" in line and "| 3 of 90 |" in line
    assert agg["bar"] == "misses"  # early ends on finished seeds settle it before the fourth seed runs
    (open_,) = aggregate([r for r in rows if r["seed"] == 1] + [rows[-1]])  # one clean seed of two
    assert open_["bar"] == "open (1 of 2 seeds)" and not open_["meets_bar"]
    (met,) = aggregate([r for r in rows if r["seed"] == 1])
    assert met["bar"] == "meets" and met["meets_bar"]


def test_d4rl_score_and_share_of_teacher_carry_their_spread_and_worst_seed_in_every_table():
    """Three seeds of known D4RL scores (80, 90, 100) and returns: the per-environment table and the summary
    give mean +- std; worst for both, as the return column does."""
    from types import SimpleNamespace

    from bpd_app.experiment.stats import aggregate
    from bpd_app.experiment.tables import markdown_table, summary_table

    def result(seed, ret, score):
        return {"env": "Hopper-v5", "label": "m", "seed": seed, "eval": {"return_mean": ret, "episodes": 30},
                "teacher": {"return_mean": 100.0, "params_total": 1000}, "return_vs_teacher": ret / 100.0,
                "d4rl_score": score, "params_nonzero": 50, "params_total": 500, "weights_removed_vs_teacher": 0.95,
                "early_terminations_where_teacher_finished": 0, "export": None, "bench": None,
                "train": {"seconds": 10.0}}

    rows = [{"env": "Hopper-v5", "label": "m", "seed": s, "state": "done", "result": result(s, r, d)}
            for s, r, d in [(0, 90.0, 90.0), (1, 80.0, 80.0), (2, 100.0, 100.0)]]
    (agg,) = aggregate(rows)
    assert agg["d4rl_worst"] == 80.0 and agg["d4rl_std"] == pytest.approx(np.std([80.0, 90.0, 100.0]))
    line = summary_table(None, [agg]).splitlines()[2]  # type: ignore[arg-type]
    assert "| 90.0 % +- 8.2 %; 80.0 % | 90.0 +- 8.2; 80.0 |" in line
    plan = SimpleNamespace(envs=["Hopper-v5"], eval={"episodes": 30, "seed": 0}, robustness=None)
    table = markdown_table(plan, [agg])  # type: ignore[arg-type]
    header, _, row = [x for x in table.splitlines() if x.startswith("|")][:3]
    cells = dict(zip(header.split(" | "), row.split(" | ")))
    assert cells["% of teacher (mean +- std; worst seed)"] == "90.0 % +- 8.2 %; 80.0 %"
    assert cells["D4RL score (mean +- std; worst seed)"] == "90.0 +- 8.2; 80.0"


def test_a_pruning_rule_with_a_bar_keeps_the_summary_tables_columns():
    """Known answer: the L1 method's rule '|theta| < 0.01 after an L1 penalty' went into the summary table as it is,
    and its two bars split the cell into three (the row two cells longer than its header); the bars are escaped."""
    from bpd_app.experiment.tables import summary_table

    agg = {"env": "E", "label": "l1", "seeds": 1, "done": 1, "vs_teacher_mean": 0.9, "vs_teacher_std": 0.0,
           "vs_teacher_worst": 0.9, "d4rl_mean": None, "d4rl_std": None, "d4rl_worst": None,
           "early_where_teacher_finished": 0, "episodes": 30, "last_evals_spread": None, "largest_drop": None,
           "sparsity_mean": 0.9, "per_seed": [{"nonzero": 10}], "pruning_rule": "|theta| < 0.01 after an L1 penalty",
           "instructions": None, "cycles": None, "bench_kernels": [], "integer_cycles": None, "policy_bytes": None,
           "policy_ram_bytes": None, "seconds_median": 1.0}
    header, _, row = summary_table(None, [agg]).splitlines()[:3]  # type: ignore[arg-type]
    cells = lambda line: line.replace("\\|", "").count("|")  # noqa: E731
    assert cells(row) == cells(header) and "\\|theta\\| < 0.01" in row


def test_a_plan_reporting_on_the_seeds_that_chose_its_teacher_is_refused_before_it_runs(tmp_path):
    """Known answer: the committed InvertedPendulum teacher was chosen on seeds 10000..10004 (its file records them);
    a plan whose 30 reporting episodes start at 9990 would report the teacher there, and every cell's evaluation of
    it. One line before anything runs; 10005 on is taken."""
    import yaml

    from bpd_app.experiment.plan import check_plan_teachers, load_plan

    teacher = ROOT / "benchmarks" / "teachers" / "InvertedPendulum-v5.npz"
    p = _plan(tmp_path, teacher, {"bpd": {}})
    raw = yaml.safe_load(p.read_text())
    for seed, refused in ((9990, True), (10005, False)):
        p.write_text(yaml.safe_dump(raw | {"eval": {"episodes": 30, "seed": seed}}))
        if refused:
            with pytest.raises(BpdError, match=r"eval seeds 9990..10019 overlap 10000..10004, the seeds that chose "
                                               r"the teacher of InvertedPendulum-v5"):
                check_plan_teachers(load_plan(p))
        else:
            check_plan_teachers(load_plan(p))


def test_bench_figures_take_the_cheapest_kernel_and_the_policy_ram(tmp_path):
    """A hand-built `bpd bench` record: the cheaper bpd kernel's figures, its stack frame plus the two
    activation buffers as the policy's RAM; a cell's table row is refreshed from its bench.json."""
    import yaml

    from bpd_app.experiment.results import collect_results
    from bpd_app.experiment.summary import _bench_figures

    def m4f(instr, stack):
        return {"cortex-m4f": {"instructions_median": instr, "us_estimate": instr / 100, "policy_bytes": 3000,
                               "flash_bytes": 4600, "policy_stack_bytes": stack}}

    bench = {"networks": {"student": {"flash_report": {"flash_bytes": 2123, "ram_activation_bytes": 320},
                                      "runtimes": {"bpd": m4f(9464, 112), "bpd-fast-tanh": m4f(7341, 96),
                                                   "onnxruntime": {"host": {"median_ns": 1.0}}}}}}
    f = _bench_figures(bench)
    assert (f["kernel"], f["instructions"], f["scratch_bytes"], f["policy_stack_bytes"], f["policy_ram_bytes"]) == (
        "bpd-fast-tanh", 7341, 320, 96, 416)
    assert _bench_figures({}) == {}

    plan_path = tmp_path / "p.yaml"
    plan_path.write_text(yaml.safe_dump({"name": "p", "envs": ["E"], "seeds": [0], "teachers": {"E": "t.npz"},
                                         "methods": ["bpd"]}))
    plan = load_plan(str(plan_path), str(tmp_path / "runs"))
    (cell,) = plan.cells()
    (cell.dir / "bench").mkdir(parents=True)
    (cell.dir / "cell.json").write_text(json.dumps({"state": "done"}))
    (cell.dir / "result.json").write_text(json.dumps({"bench": {"instructions": 7341, "policy_bytes": 3000}}))
    (row,) = collect_results(plan)
    assert "policy_ram_bytes" not in row["result"]["bench"]          # recorded before the figure existed
    (cell.dir / "bench" / "bench.json").write_text(json.dumps(bench))
    (row,) = collect_results(plan)
    assert row["result"]["bench"]["policy_ram_bytes"] == 416


def test_a_cells_environment_steps_count_the_fine_tunes_visits_beside_the_dataset(tmp_path):
    """A distillation with --finetune-visits drives the task for that many environment steps on top of the dataset's
    (its run summary's visits): the cell's summary, which the tables read, counted the dataset's alone (the delivery
    plan's -visits-full cells: 100,000 where they ran 200,000)."""
    import yaml

    from bpd_app.experiment.plan import cell_spec
    from bpd_app.experiment.summary import _cell_result

    plan_path = tmp_path / "p.yaml"
    plan_path.write_text(yaml.safe_dump({"name": "p", "envs": ["InvertedPendulum-v5"], "seeds": [0],
                                         "teachers": {"InvertedPendulum-v5": "t.npz"}, "dataset": {"steps": 5000},
                                         "methods": ["bpd"]}))
    plan = load_plan(str(plan_path), str(tmp_path / "runs"))
    (cell,) = plan.cells()
    ev = {"return_mean": 10.0, "episodes": 1, "terminated": [True]}
    for train, steps in (({"steps": 300}, 5000), ({"steps": 300, "visits": {"env_steps": 1200, "budget": 1200}}, 6200)):
        res = _cell_result(plan, cell, cell_spec(plan, cell), train, ev, {"return_mean": 20.0, "terminated": [False]},
                           None, {}, 1.0)
        assert res["train"]["env_steps"] == steps and res["train"]["grad_steps"] == 300


def test_a_method_with_a_dataset_of_its_own(tmp_path):
    """A method's `dataset` keys replace the plan's for its cells alone: its cells learn from (and are specified by)
    a dataset named by what differs, collected beside the plan's; the other cells keep the plan's file and their
    digests; a bad block is one line naming it."""
    import yaml

    from bpd_app.experiment.cells import prepare_env
    from bpd_app.experiment.plan import _digest, cell_spec
    from training.collect import load_dataset

    base = {"name": "p", "envs": ["InvertedPendulum-v5"], "seeds": [0], "eval": {"episodes": 1, "seed": 0},
            "teachers": {"InvertedPendulum-v5": str(ROOT / "benchmarks" / "teachers" / "InvertedPendulum-v5.npz")},
            "dataset": {"steps": 300, "noise": 0.1, "seed": 900000}}
    one, two = tmp_path / "one.yaml", tmp_path / "two.yaml"
    one.write_text(yaml.safe_dump(base | {"methods": {"bpd": {}}}))
    two.write_text(yaml.safe_dump(base | {"methods": {"bpd": {}, "noisy": {"method": "bpd",
                                                                            "dataset": {"noise": 0.3}}}}))
    ref, plan = load_plan(str(one), str(tmp_path / "r1")), load_plan(str(two), str(tmp_path / "runs"))
    cells = {c.label: c for c in plan.cells()}
    assert _digest(cell_spec(plan, cells["bpd"])) == _digest(cell_spec(ref, ref.cells()[0]))
    assert cell_spec(plan, cells["noisy"])["dataset"] == {"steps": 300, "noise": 0.3, "seed": 900000}
    ds = tmp_path / "runs" / "datasets"
    assert plan.cell_dataset_path(cells["bpd"]) == ds / "InvertedPendulum-v5.npz"
    assert plan.cell_dataset_path(cells["noisy"]) == ds / "InvertedPendulum-v5.noise0.3.npz"
    prepare_env(plan, "InvertedPendulum-v5")
    noises = {f.name: load_dataset(f).meta["noise"] for f in ds.glob("*.npz")}
    assert noises == {"InvertedPendulum-v5.npz": 0.1, "InvertedPendulum-v5.noise0.3.npz": 0.3}
    for bad, says in (({"noise": -1}, "dataset of 'noisy'.noise must be a number >= 0"),
                      ({"episodes": 3}, "dataset of 'noisy' takes steps, noise and seed, not episodes")):
        two.write_text(yaml.safe_dump(base | {"methods": {"noisy": {"method": "bpd", "dataset": bad}}}))
        with pytest.raises(BpdError, match=re.escape(says)):
            load_plan(str(two), str(tmp_path / "runs"))


def test_status_estimates_the_time_left_from_finished_peers(tmp_path):
    """Hand-made cell records of known times: an unfinished cell is estimated from the median of its
    finished peers (a resumed cell counts its training's summed time), a running one less what it has
    spent, and a label with no peer in its environment is scaled from another environment."""
    import yaml

    from bpd_app.experiment.status import plan_status, status_summary

    plan_path = tmp_path / "p.yaml"
    plan_path.write_text(yaml.safe_dump({"name": "p", "envs": ["A", "B"], "seeds": [0, 1, 2],
                                         "teachers": {"A": "t.npz", "B": "t.npz"},
                                         "methods": {"bpd": {}, "x": {"method": "bpd-eta-constant"}}}))
    plan = load_plan(str(plan_path), str(tmp_path / "runs"))
    now = 1.8e9
    started = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now - 280))

    def cell(key, rec, train_seconds=None):
        d = tmp_path / "runs" / key
        d.mkdir(parents=True)
        (d / "cell.json").write_text(json.dumps(rec))
        if train_seconds is not None:
            (d / "result.json").write_text(json.dumps({"train": {"seconds": train_seconds}}))

    for seed, secs in enumerate([100, 120, 140]):
        cell(f"A/bpd/seed{seed}", {"state": "done", "seconds": secs})
    # resumed: its last invocation took 15 s, the training 190 s over its sessions, evaluation 10 s
    cell("A/x/seed0", {"state": "done", "seconds": 15, "stage_seconds": {"train": 5, "evaluate": 10}}, 190)
    cell("B/bpd/seed0", {"state": "done", "seconds": 600})
    cell("B/bpd/seed1", {"state": "running", "host": "elsewhere", "pid": 1, "started": started})
    cell("B/bpd/seed2", {"state": "failed", "error": "boom"})
    rows = {r["cell"]: r for r in plan_status(plan, now=now)}
    left = {k: (r["left_seconds"], r["estimate"]) for k, r in rows.items() if r["state"] != "done"}
    assert left == {"A/x/seed1": (200.0, "peers"), "A/x/seed2": (200.0, "peers"),
                    "B/bpd/seed1": (320.0, "peers"), "B/bpd/seed2": (600.0, "peers"),
                    "B/x/seed0": (1000.0, "scaled"), "B/x/seed1": (1000.0, "scaled"),
                    "B/x/seed2": (1000.0, "scaled")}  # B costs 600 / 120 = 5x A on the label both ran
    text = status_summary(list(rows.values()))
    assert "5 done, 1 failed, 1 running, 0 interrupted, 5 pending" in text
    assert "about 1.2 h of one worker for 7 of 7 unfinished cells (4 from" in text and "3 scaled" in text
    # the epoch a cell records wins over its local start time; a cell past its peers' time is overdue
    (tmp_path / "runs" / "B/bpd/seed1" / "cell.json").write_text(json.dumps(
        {"state": "running", "host": "elsewhere", "started": "garbage", "started_epoch": now - 50}))
    def running():
        return next(r for r in plan_status(plan, now=now) if r["cell"] == "B/bpd/seed1")

    assert running()["left_seconds"] == 550.0
    (tmp_path / "runs" / "B/bpd/seed1" / "cell.json").write_text(json.dumps(
        {"state": "running", "host": "elsewhere", "started_epoch": now - 700}))
    assert (running()["left_seconds"], running()["estimate"]) == (0.0, "overdue")
    assert running()["stage"] is None  # no command recorded yet
    (tmp_path / "runs" / "B/bpd/seed1" / "cell.json").write_text(json.dumps(
        {"state": "running", "host": "elsewhere", "started_epoch": now - 700,
         "commands": ["bpd distill --teacher t.npz", "bpd export run/student.pt --out export"]}))
    assert running()["stage"] == "export"  # the last command it started
    # nothing finished anywhere: no estimate, said so
    empty = load_plan(str(plan_path), str(tmp_path / "empty"))
    assert status_summary(plan_status(empty, now=now)).endswith("left: 12 unfinished cells, no estimate "
                                                                "(no finished cell of the same label to go by yet)")


def test_selection_rules_on_hand_built_candidates():
    rows = [{"select_return": 100.0, "params_nonzero": 500}, {"select_return": 99.0, "params_nonzero": 300},
            {"select_return": 97.0, "params_nonzero": 100}, {"select_return": 99.0, "params_nonzero": 300}]
    assert choose(rows, "sparsest-within", 0.02, None, None) == (1, None)   # 97 is 3 % below the best
    assert choose(rows, "sparsest-within", 0.05, None, None) == (2, None)
    assert choose(rows, "best", 0.02, None, None) == (0, None)
    assert choose(rows, "last", 0.02, None, None) == (3, None)
    assert choose(rows, "sparsest-within", 0.0, 0.96, 100.0) == (2, True)  # keeps >= 96 % of the teacher
    assert choose(rows, "sparsest-within", 0.0, 1.5, 100.0) == (0, False)  # nobody keeps 150 %: best, flagged
    # with a measured cost (cycles) the cheapest that keeps the return wins, not the sparsest
    costed = [r | {"cost": c} for r, c in zip(rows, (4000.0, 5000.0, 3000.0, 2500.0))]
    assert choose(costed, "sparsest-within", 0.0, 0.98, 100.0) == (3, True)
    assert choose(costed, "sparsest-within", 0.0, 0.96, 100.0) == (3, True)


def test_smlad_cost_counts_the_dsp_kernels_multiply_adds_of_a_collapsed_policy():
    """Layer 1 (3 x 4): columns 0 and 1 share row 0 and pair, column 2 alone, column 3 empty: rows 0 and 1
    in the pair, row 2 in column 2, 3 SMLADs; layer 2 (1 x 3): one row, columns 0 and 1 pair (both
    weights), column 2 alone: 2. A partner filled in (row 1, column 1) adds a weight and no SMLAD."""
    from training.mlp import MLPPolicy
    from training.selection import smlad_cost

    w1 = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0]], np.float32)
    w2 = np.array([[0.5, -0.5, 2.0]], np.float32)
    pol = lambda a: MLPPolicy([a, w2], [np.zeros(3, np.float32), np.zeros(1, np.float32)], "tanh", "tanh",
                              np.zeros(4, np.float32), np.ones(4, np.float32), -np.ones(1, np.float32),
                              np.ones(1, np.float32))
    assert smlad_cost(pol(w1)) == 5.0
    filled = w1.copy()
    filled[1, 1] = 0.3
    assert smlad_cost(pol(filled)) == 5.0 and pol(filled).params_nonzero == pol(w1).params_nonzero + 1


def test_student_select_by_cycles_on_a_tiny_run(tiny_pipeline, tmp_path):
    """`bpd student select --cost m4f-cycles`: every candidate measured on the emulated Cortex-M4F, the chosen
    one the cheapest that keeps the target, its cost recorded in the student's selection."""
    import shutil as sh

    if sh.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc not installed")
    pytest.importorskip("unicorn")
    from training.student import load_student

    out = tmp_path / "sel.pt"
    r = run_bpd("student", "select", str(tiny_pipeline / "run"), "--keep-return", "0.01", "--cost", "m4f-cycles",
                "--episodes", "1", "--out", str(out))
    assert "cost" in r.stdout
    _, meta, _ = load_student(out)
    assert "Cortex-M4F cycles" in meta["selection"]["rule"]
    chosen = meta["selection"]["chosen"]
    assert chosen["cost"] > 0


def test_a_reselection_writes_its_student_and_the_runs_summary_with_its_selection(tiny_pipeline, tmp_path):
    """The reselect method's command (bpd_app/methods.py) over a finished run: every candidate judged on the stated
    episodes beside the teacher; the cell's run directory gets the student chosen and the run's summary.json with
    this selection (its seeds: RESELECT_EPISODES of them, falls counted) and the seconds added to the run's."""
    import shutil as sh

    from bpd_app.methods import RESELECT_EPISODES, RESELECTED, get
    from training.student import load_student

    cells = tmp_path / "E" / RESELECTED / "seed0"
    sh.copytree(tiny_pipeline / "run", cells / "run")
    out = tmp_path / "E" / "again" / "seed0" / "run"
    cmd = get(f"{RESELECTED}-reselect").command(CellInputs("E", 0, "t", "d", out, {}, {RESELECTED: {}}))
    assert cmd[:3] == ["student", "select", str(cells / "run")]
    assert cmd[cmd.index("--episodes") + 1] == str(RESELECT_EPISODES) and "--no-falls" in cmd
    cmd[cmd.index("--episodes") + 1] = "2"  # the tiny run: two episodes a candidate
    run_bpd(*cmd)
    base = json.loads((cells / "run" / "summary.json").read_text())
    summ = json.loads((out / "summary.json").read_text())
    sel = summ["selection"]
    assert sel["select_seeds"][1] - sel["select_seeds"][0] + 1 == 2 and "falls" in sel["chosen"]
    assert summ["seconds"] == pytest.approx(base["seconds"] + summ["select_seconds"], abs=0.1)
    assert summ["params_nonzero"] == sel["chosen"]["params_nonzero"] and summ["reselected"] is True
    _, meta, _ = load_student(out / "student.pt")
    assert meta["step"] == sel["chosen"]["step"]


def test_method_flags_and_resume():
    from training.distill import DistillConfig

    assert flags({"eta_schedule": "constant", "hidden": [8, 4], "progress": False, "x": None}, DistillConfig) == [
        "--eta-schedule", "constant", "--hidden", "8", "4", "--no-progress"]
    # a switch at its default is not written; one off by default is turned on by its own name
    assert flags({"progress": True, "value_term": False, "resume": True}, DistillConfig) == [
        "--no-value-term", "--resume"]


def test_compress_default_method_first_is_distills_default(tmp_path):
    """bpd compress's first method (which the README's tables take as distill's default) runs `bpd distill` at its
    defaults: every option its command writes (beyond seed and progress) has distill's default value, and no
    switch is turned off, though the method starts from the paper's pins (training.distill_config.PAPER)."""
    from bpd_app.compress import DEFAULT_METHODS
    from bpd_app.methods import get as get_method
    from training.distill_config import DistillConfig

    c = CellInputs("E", 3, "t.npz", "d.npz", tmp_path / "run", {})
    cmd = get_method(DEFAULT_METHODS[0]).command(c)
    rest = cmd[cmd.index("--out") + 2:]
    assert rest[:3] == ["--seed", "3", "--no-progress"] and not any(a.startswith("--no-") for a in rest[3:]), cmd
    defaults = DistillConfig(teacher="", dataset="")
    for name, value in zip(rest[3::2], rest[4::2]):
        assert str(getattr(defaults, name[2:].replace("-", "_"))) == value, (name, value)


def test_distill_command_resumes_a_started_run(tmp_path):
    c = CellInputs("E", 3, "t.npz", "d.npz", tmp_path / "run", {"steps": 5})
    assert "--resume" not in distill_command(c)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    cmd = distill_command(c)
    assert cmd[-1] == "--resume" and cmd[cmd.index("--seed") + 1] == "3" and cmd[cmd.index("--steps") + 1] == "5"


def test_online_sac_budget_is_the_teachers_environment_steps_not_the_plans_gradient_steps(tmp_path):
    """env_args steps is the distillers' gradient-step budget; online SAC keeps the teacher's recorded
    environment steps unless its own args give steps, and its other env_args still apply."""
    import yaml

    from bpd_app.experiment.plan import cell_spec
    from bpd_app.methods import get

    (tmp_path / "t.npz").write_bytes(b"")
    plan_path = tmp_path / "plan.yaml"
    plan_path.write_text(yaml.safe_dump({
        "name": "p", "envs": ["A"], "seeds": [0], "teachers": {"A": "t.npz"},
        "methods": {"bpd": {}, "online-sac-small": {},
                    "sac-short": {"method": "online-sac-small", "args": {"steps": 7000}}},
        "env_args": {"A": {"steps": 100000, "eval_every": 5000}}}))
    plan = load_plan(str(plan_path), str(tmp_path / "runs"))
    spec = {c.label: cell_spec(plan, c)["args"] for c in plan.cells()}
    assert spec == {"bpd": {"steps": 100000, "eval_every": 5000}, "online-sac-small": {"eval_every": 5000},
                    "sac-short": {"steps": 7000, "eval_every": 5000}}
    dep = {"bpd": {"export": {"widths": [11, 60, 48, 3]}}}
    meta = {"train": {"steps": 190000}}

    def budget(args: dict) -> str:
        cmd = get("online-sac-small").command(CellInputs("A", 0, "t.npz", "d.npz", tmp_path / "run", args, dep, meta))
        assert cmd[cmd.index("--hidden") + 1:cmd.index("--hidden") + 3] == ["60", "48"]
        return cmd[cmd.index("--steps") + 1]
    assert budget(spec["online-sac-small"]) == "190000" and budget(spec["sac-short"]) == "7000"


def test_an_online_sac_cell_records_its_budget_and_curve_and_is_plotted_against_environment_steps(
        tiny_pipeline, tmp_path):
    """online-sac-small through the runner: the summary states the environment and gradient steps it
    used, the actor's widths (BPD's collapsed ones) and its evaluations against environment steps;
    the table draws them with the teacher and BPD as references."""
    plan = _plan(tmp_path, tiny_pipeline / "teacher.npz", {
        "bpd": {"args": TINY_DISTILL},
        "online-sac-small": {"args": {"steps": 600, "eval_every": 200, "learning_starts": 200, "eval_episodes": 1,
                                      "final_episodes": 1, "critic_hidden": [16, 16]}}}, bench=True)
    runs = tmp_path / "runs"
    p = _run_plan(plan, runs)
    assert p.returncode == 0, p.stdout + p.stderr
    bpd = json.loads((runs / "InvertedPendulum-v5" / "bpd" / "seed0" / "result.json").read_text())
    sel = json.loads((runs / "InvertedPendulum-v5" / "bpd" / "seed0" / "run" / "summary.json").read_text())["selection"]
    assert bpd["train"]["selection_seeds"] == sel["select_seeds"] and len(sel["select_seeds"]) == 2  # its episodes
    res = json.loads((runs / "InvertedPendulum-v5" / "online-sac-small" / "seed0" / "result.json").read_text())
    t = res["train"]
    assert t["env_steps"] == 600 and t["grad_steps"] == 400 and t["control"] == "student"
    assert t["hidden"] == bpd["export"]["widths"][1:-1]
    assert t["curve"]["env_steps"] == [200, 400, 600] and t["curve"]["step"] == [0, 200, 400]
    assert len(t["curve"]["return"]) == 3 and t["selection"]["step"] in (200, 400, 600)
    # a summary written before online cells read their policy file: the table fills it in from the run root
    path = runs / "InvertedPendulum-v5" / "online-sac-small" / "seed0" / "result.json"
    path.write_text(json.dumps(res | {"train": {k: (v if k == "seconds" else None) for k, v in t.items()}}))
    run_bpd("experiment", "table", str(plan), "--runs", str(runs), "--out", str(tmp_path / "table"))
    assert (tmp_path / "table" / "InvertedPendulum-v5.env-curves.png").is_file()
    filled = json.loads((tmp_path / "table" / "cells" / "InvertedPendulum-v5" / "online-sac-small" /
                         "seed0.json").read_text())["train"]
    assert {k: filled[k] for k in t if k != "last_evals"} == {k: t[k] for k in t if k != "last_evals"}


@pytest.mark.parametrize("text, message", [
    ("envs: [A]\nseeds: [0]\nteachers: {A: t.npz}\nmethods: [nope]", "unknown method 'nope'"),
    ("envs: [A]\nseeds: [0]\nteachers: {}\nmethods: [bpd]", "no teacher for A"),
    ("envs: [A]\nseeds: [0, 0]\nteachers: {A: t.npz}\nmethods: [bpd]", "seeds must be distinct"),
    ("envs: [A]\nseeds: [0]\nteachers: {A: t.npz}\nmethods: [online-sac-small]", "needs a 'bpd' cell"),
    ("envs: [A]\nseeds: [0]\nteachers: {A: t.npz}\nmethods: [bpd-finetune, magnitude-prune]", "needs a 'bpd' cell"),
    ("envs: [A]\nseeds: [0]\nteachers: {A: t.npz}\nmethods: [bpd]\nbogus: 1", "unknown plan keys: bogus"),
    ("envs: [A]\nseeds: [0]\nteachers: {A: t.npz}\nmethods: [bpd]\neval: {seed: 99990, episodes: 30}",
     "must stay below 100000"),
    ("envs: [A\nseeds: [0]", "YAML syntax error at line"),
    ("[1, 2]", "a plan is a mapping"),
    ("seeds: [0]\nteachers: {}\nmethods: [bpd]", "plan has no 'envs'"),
])
def test_bad_plans_are_one_line_errors(tmp_path, text, message):
    p = tmp_path / "plan.yaml"
    p.write_text(text)
    with pytest.raises(BpdError, match=message) as e:
        load_plan(p)
    assert "\n" not in str(e.value)


def test_a_bpd_variant_stands_for_the_bpd_cell_a_method_needs_only_where_named(tmp_path):
    """magnitude-prune sized from a BPD variant's cell (the delivery plan's rival at the cut's size): named with
    needs, the variant's row is the cell it needs; unnamed, a variant is not taken for the `bpd` cell (above)."""
    p = tmp_path / "plan.yaml"
    p.write_text("envs: [A]\nseeds: [0]\nteachers: {A: t.npz}\nmethods:\n  bpd-finetune: {}\n"
                 "  magnitude-prune: {needs: {bpd: bpd-finetune}}\n")
    assert load_plan(p).methods["magnitude-prune"].needs == {"bpd": "bpd-finetune"}
    p.write_text("envs: [A]\nseeds: [0]\nteachers: {A: t.npz}\nmethods:\n  l1-threshold: {}\n"
                 "  magnitude-prune: {needs: {bpd: l1-threshold}}\n")
    with pytest.raises(BpdError, match="needs a 'bpd' cell"):  # not a BPD row at all
        load_plan(p)
    p.write_text("envs: [A]\nseeds: [0]\nteachers: {A: t.npz}\nmethods:\n  bpd-finetune: {}\n"
                 "  online-sac-small: {needs: {bpd: bpd-finetune}}\n")
    with pytest.raises(BpdError, match="needs a 'bpd' cell"):  # reads the `bpd` cell by its label: no variant
        load_plan(p)


def test_dense_nonzero_is_the_widest_two_equal_layers_within_the_bpd_cells_nonzero_count(tmp_path):
    """Parameters of n_in-H-H-n_out, biases included: n_in H + H^2 + H n_out + 2H + n_out. Hopper's 11 in, 3 out at
    612: H = 17 has 187 + 289 + 51 + 34 + 3 = 564, H = 18 has 198 + 324 + 54 + 36 + 3 = 615. The command trains a
    dense student of those widths; a budget below the smallest network, or a cell without its export, is refused."""
    from bpd_app.methods import dense_width, get

    assert dense_width(11, 3, 612) == 17 and dense_width(11, 3, 615) == 18 and dense_width(11, 3, 614) == 17
    assert dense_width(9, 1, 69) == 4  # 36 + 16 + 4 + 8 + 1 = 65; 5: 45 + 25 + 5 + 10 + 1 = 86
    with pytest.raises(BpdError, match="at most 9 parameters"):
        dense_width(9, 1, 9)  # H = 1: 9 + 1 + 1 + 2 + 1 = 14
    dep = {"params_nonzero": 612, "export": {"widths": [11, 47, 34, 3]}}
    cmd = get("dense-nonzero").command(CellInputs("E", 0, "t.npz", "d.npz", tmp_path / "run", {"hidden": [64, 64]},
                                                  {"bpd-units-finetune-pairs-warmup-c50-visits-sure": dep}))
    at = cmd.index("--hidden")
    assert cmd[at + 1:at + 3] == ["17", "17"] and "--hidden" not in cmd[at + 1:]
    assert cmd[cmd.index("--student") + 1] == "dense"
    with pytest.raises(BpdError, match="no nonzero count or export"):
        get("dense-nonzero").command(CellInputs("E", 0, "t.npz", "d.npz", tmp_path / "run", {},
                                                {"bpd": {"params_nonzero": 612}}))


def test_dense_c50_is_the_widest_dense_student_within_the_cuts_cycle_budget(tmp_path, monkeypatch):
    """dense_cycles_width against every width tried in turn with the same estimate (dsp_meter.mask_cycles): the
    largest H whose n_in-H-H-n_out layers fit the budget; the command trains that dense student at 0.49 of the bpd
    cell's cycles, as the c50 cuts are sized, and bpd compress may run it after the bpd run."""
    import functools
    import types

    import bpd_app.methods as methods
    import training.teacher
    from bpd_app.methods import CYCLE_CUTS, dense_cycles_width, get
    from firmware_host.measure.dsp_meter import mask_cycles

    @functools.lru_cache
    def layers(h):
        return mask_cycles([np.ones((h, 11), bool), np.ones((h, h), bool), np.ones((3, h), bool)])

    for budget in (layers(7), layers(7) - 1, layers(20) + 1):
        want = max(h for h in range(1, 41) if layers(h) <= budget)
        assert dense_cycles_width(11, 3, budget) == want, budget
    with pytest.raises(BpdError, match="no dense network"):
        dense_cycles_width(11, 3, layers(1) - 1)
    import firmware_host.measure.dsp_meter as dsp_meter

    def bumpy(masks, activation="tanh"):  # 10 cycles a unit, but width 4 tiles badly: 5 fits where 4 does not
        h = masks[0].shape[0]
        return 1000 if h == 4 else 10 * h

    monkeypatch.setattr(dsp_meter, "mask_cycles", bumpy)
    assert dense_cycles_width(11, 3, 55) == 5  # the search alone stops at 3 (2 fits, 4 does not)
    monkeypatch.undo()
    shares = []
    monkeypatch.setattr(methods, "bpd_cycles_budget", lambda c, share: shares.append(share) or layers(12))
    monkeypatch.setattr(training.teacher, "load_teacher", lambda p: types.SimpleNamespace(obs_dim=11, act_dim=3))
    cmd = get("dense-c50").command(CellInputs("E", 0, "t.npz", "d.npz", tmp_path / "run", {"hidden": [64, 64]}))
    at = cmd.index("--hidden")
    assert cmd[at + 1:at + 3] == ["12", "12"] and cmd[cmd.index("--student") + 1] == "dense" and shares == [0.49]
    assert "dense-c50" in CYCLE_CUTS  # bpd compress runs it after the bpd run, as it runs the cuts
    get("dense-c30").command(CellInputs("E", 0, "t.npz", "d.npz", tmp_path / "run", {"hidden": [64, 64]}))
    assert shares == [0.49, 0.3] and "dense-c30" in CYCLE_CUTS  # dense-c30: the c30 cuts' budget
    sure = get("dense-c30-sure").command(CellInputs("E", 0, "t.npz", "d.npz", tmp_path / "run", {"hidden": [64, 64]}))
    assert shares[-1] == 0.3 and "--select-no-falls" in sure and sure[sure.index("--select-episodes") + 1] == "30"
    plain = get("dense-c30").command(CellInputs("E", 0, "t.npz", "d.npz", tmp_path / "run", {"hidden": [64, 64]}))
    assert "--select-no-falls" not in plain and [x for x in sure if x not in (
        "--select-no-falls", "--select-episodes", "30")] == plain  # the same network, chosen otherwise
    sure50 = get("dense-c50-sure").command(CellInputs("E", 0, "t.npz", "d.npz", tmp_path / "run", {}))
    assert shares[-1] == 0.49 and "--select-no-falls" in sure50 and "dense-c50-sure" in CYCLE_CUTS


# --------------------------------------------------------------------------- end to end


def test_distill_hands_over_the_student_its_rule_chose(tiny_pipeline):
    run = tiny_pipeline / "run"
    summary = json.loads((run / "summary.json").read_text())
    sel = summary["selection"]
    assert sel["rule"].startswith("sparsest-within") and sel["select_seeds"][0] >= 200_000
    assert (run / "candidates.pt").is_file()
    import torch
    blob = torch.load(run / "student.pt", weights_only=True)
    assert blob["meta"]["step"] == sel["chosen"]["step"]
    assert summary["train_eval_seeds"][0] >= 100_000


def test_threshold_sweep_without_retraining(tiny_pipeline, tmp_path):
    out = tmp_path / "sweep.json"
    run_bpd("student", "sweep", str(tiny_pipeline / "run"), "--thresholds", "-4", "0", "3", "8",
            "--episodes", "1", "--out", str(out))
    rows = json.loads(out.read_text())["rows"]
    nz = [r["params_nonzero"] for r in rows]
    assert [r["threshold"] for r in rows] == [-4, 0, 3, 8]
    assert nz == sorted(nz) and nz[0] < nz[-1]          # a lower threshold prunes more
    assert out.with_suffix(".png").is_file()


def test_the_threshold_study_adds_to_its_committed_seeds_when_the_students_are_gone(tiny_pipeline, tmp_path,
                                                                                    benchmark_script):
    """benchmarks/threshold_sweep.py sweeps the students at hand and keeps the seeds swept before
    whose students a lost run root took, each with the plan that trained it."""
    import shutil

    ts = benchmark_script("threshold_sweep")
    plan = _plan(tmp_path, tiny_pipeline / "teacher.npz", {"bpd": {"args": TINY_DISTILL}}, seeds=(0, 1))
    out = tmp_path / "out"

    def place(runs: Path, seed: int) -> None:
        (runs / "InvertedPendulum-v5" / "bpd" / f"seed{seed}" / "run").mkdir(parents=True)
        shutil.copy(tiny_pipeline / "run" / "student.pt", runs / "InvertedPendulum-v5" / "bpd" / f"seed{seed}" / "run")

    def study(runs: Path) -> tuple[int, dict]:
        rc = ts.main(["--plan", str(plan), "--runs", str(runs), "--out", str(out), "--episodes", "1"])
        return rc, (json.loads((out / "threshold_sweep.json").read_text()) if rc == 0 else {})

    assert study(tmp_path / "none")[0] == 1  # no student and nothing swept before: an error, nothing written
    assert not out.exists()
    place(tmp_path / "a", 0)
    rc, first = study(tmp_path / "a")
    (s0,) = first["envs"]["InvertedPendulum-v5"]["per_seed"]
    assert rc == 0 and s0["seed"] == 0 and s0["plan"] == "plan.yaml" and len(s0["rows"]) == len(ts.THRESHOLDS)
    place(tmp_path / "b", 1)  # a new run root: seed 0 is gone, seed 1 is at hand
    rc, both = study(tmp_path / "b")
    env = both["envs"]["InvertedPendulum-v5"]
    assert rc == 0 and env["seeds"] == [0, 1] and env["per_seed"][0] == s0
    assert env["rows"][0]["params_nonzero_range"] == [s0["rows"][0]["params_nonzero"]] * 2  # the same student
    rc, again = study(tmp_path / "none")  # nothing at hand: the committed study stands
    assert rc == 0 and again["envs"] == both["envs"]
    assert "seeds 0, 1: the cell of `plan.yaml`" in (out / "threshold_sweep.md").read_text()


def test_teacher_training_resumes_after_kill(tmp_path):
    out = tmp_path / "t.npz"
    args = ["teacher", "train", "--out", str(out), "--algo", "td3", "--steps", "900", "--learning-starts", "100",
            "--eval-every", "300", "--eval-episodes", "1", "--final-episodes", "2", "--hidden", "16", "16",
            "--checkpoint-every", "300", "--no-progress", "--seed", "3"]
    p = subprocess.Popen([BPD, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ck = Path(f"{out}.work") / "checkpoint.pt"
    deadline = time.time() + 240
    while not ck.exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    if p.poll() is not None:
        pytest.skip("training finished before it could be interrupted")
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert not out.exists()
    again = run_bpd(*args, check=False)
    assert again.returncode == 1 and "pass --resume" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    done = run_bpd(*args[:args.index("--steps")], "--steps", "1200", *args[args.index("--steps") + 2:],
                   "--resume")  # a raised budget: the training continues to it
    assert "teacher:" in done.stdout
    from training.teacher import load_teacher
    t = load_teacher(out)
    assert t.train["seed"] == 3 and t.train["config"]["steps"] == 1200 and t.train["steps"] == 1200
    assert t.train["final"]["episodes"] == 2 and t.train["final"]["seeds"][0] == 50_300
    assert not Path(f"{out}.work").exists()


def _candidates(run: Path) -> list:
    from training.selection import load_candidates
    return load_candidates(run / "candidates.pt")


def _run_plan(plan: Path, runs: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_bpd("experiment", "run", str(plan), "--runs", str(runs), "--workers", "2", *extra, check=False,
                   timeout=900)


def test_plan_runs_skips_finished_cells_and_records_failures(tiny_pipeline, tmp_path):
    plan = _plan(tmp_path, tiny_pipeline / "teacher.npz", {
        "bpd": {"args": TINY_DISTILL},
        "broken": {"method": "bpd", "args": TINY_DISTILL | {"select_tol": 5}},  # out of range: the cell fails
    }, bench=True)
    runs = tmp_path / "runs"
    p = _run_plan(plan, runs)
    assert p.returncode == 1 and "1 done, 1 failed" in p.stdout
    rec = json.loads((runs / "InvertedPendulum-v5" / "broken" / "seed0" / "cell.json").read_text())
    assert rec["state"] == "failed" and "--select-tol" in rec["error"]
    res = json.loads((runs / "InvertedPendulum-v5" / "bpd" / "seed0" / "result.json").read_text())
    assert res["eval"]["episodes"] == 2 and res["eval"]["seeds"] == [0, 1]
    assert res["params_nonzero"] == res["export"]["params_nonzero"] > 0
    assert res["train"]["selection_rule"].startswith("sparsest-within")
    if res["bench"]:  # with the ARM toolchain: Cortex-M4F figures
        assert res["bench"]["instructions"] > 0 and res["bench"]["policy_bytes"] > 0
    before = (runs / "InvertedPendulum-v5" / "bpd" / "seed0" / "cell.log").read_text()
    again = _run_plan(plan, runs, "--only", "InvertedPendulum-v5/bpd/")
    assert again.returncode == 0, again.stderr
    assert (runs / "InvertedPendulum-v5" / "bpd" / "seed0" / "cell.log").read_text() == before  # nothing rerun
    cell = runs / "InvertedPendulum-v5" / "bpd" / "seed0"
    if res["bench"] and res["bench"].get("integer"):  # a change to the kernels: the cell measured again
        rep_path = cell / "export" / "export_report.json"
        rep = json.loads(rep_path.read_text())
        rep["kernel"]["candidates"]["integer"]["form"] = "an earlier form"
        rep_path.write_text(json.dumps(rep))
        (cell / "bench" / "bench.json").write_text("{}")
        p = _run_plan(plan, runs, "--rebench", "--only", "InvertedPendulum-v5/bpd/")
        assert p.returncode == 0 and "InvertedPendulum-v5/bpd/seed0: measured again" in p.stdout, p.stdout + p.stderr
        assert json.loads(rep_path.read_text())["kernel"]["candidates"]["integer"]["form"] != "an earlier form"
        ek = json.loads((cell / "bench" / "bench.json").read_text())["export_kernels"]
        variant = json.loads(rep_path.read_text())["kernel"]["variant"]  # compact-table: the compact kind's variant
        assert ek["shipped"] == variant and f"| {variant} (shipped) |" in (cell / "bench" / "bench.md").read_text()
        assert not (cell / "export.old").exists() and not (cell / "bench.old").exists()
        assert str(cell / "export") == json.loads((cell / "bench" / "bench.json").read_text())["export"]
        (cell / "export").rename(cell / "export.old")  # stopped between the two moves: the next call puts it back
        p = _run_plan(plan, runs, "--rebench", "--only", "InvertedPendulum-v5/")
        assert "bpd/seed0: current" in p.stdout and "broken/seed0: not finished here" in p.stdout, p.stdout
    run_bpd("experiment", "table", str(plan), "--runs", str(runs), "--out", str(tmp_path / "table"))
    md = (tmp_path / "table" / "table.md").read_text()
    assert "| bpd | 1/1 |" in md and "broken" in md and "Failed cells" in md
    assert (tmp_path / "table" / "cells" / "InvertedPendulum-v5" / "bpd" / "seed0.json").is_file()
    assert str(tmp_path) not in (tmp_path / "table" / "cells.csv").read_text()

    # choosing again on the same cell: every candidate judged, by a return target and by the run's own rule
    study = [sys.executable, str(ROOT / "benchmarks" / "reselect_study.py"), "--plan", str(plan), "--runs",
             str(runs), "--out", str(tmp_path / "study")]
    cell_dir = runs / "InvertedPendulum-v5" / "bpd" / "seed0"
    n_cands = len(_candidates(cell_dir / "run"))
    for rule, value in (("keep-return", "0.5"), ("sparsest-within", "0.5")):
        flag = "--keep-return" if rule == "keep-return" else "--tol"
        p = subprocess.run([*study, "--rule", rule, flag, value], capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr
        (row,) = json.loads((tmp_path / "study" / f"reselect-{rule}.json").read_text())["envs"]["InvertedPendulum-v5"]
        rec = json.loads((cell_dir / f"{rule}-{value}.json").read_text())
        k = row["reselected"]
        assert row["handed_over"]["return"] == res["eval"]["return_mean"] and k["candidates"] == n_cands
        best = max(r["select_return"] for r in rec["rows"])
        if rule == "sparsest-within":  # the fewest nonzero within 50 % of the best, over every candidate
            assert k["select_return"] >= best - 0.5 * abs(best) - 1e-9
            assert rec["chosen"]["params_nonzero"] == min(r["params_nonzero"] for r in rec["rows"]
                                                          if r["select_return"] >= best - 0.5 * abs(best) - 1e-9)
        elif k["met_on_selection"]:  # the sparsest that keeps the target; else the best on the selection seeds
            assert k["select_return"] >= 0.5 * k["teacher_select_return"] - 1e-9
        else:
            assert k["select_return"] == best
        assert k["step"] == rec["chosen"]["step"] and k["nonzero"] == rec["params_nonzero"] > 0
        assert f"{rule} 0.5" in (tmp_path / "study" / f"reselect-{rule}.md").read_text()
    cache = cell_dir / "keep-return-0.5.json"
    mtime = cache.stat().st_mtime_ns
    p = subprocess.run([*study, "--keep-return", "0.5"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0 and cache.stat().st_mtime_ns == mtime  # judged once: the choice is cached
    bad = subprocess.run([*study, "--label", "nope"], capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "no method labelled 'nope'" in bad.stderr and "Traceback" not in bad.stderr


def test_a_lost_run_root_is_restored_from_the_committed_summaries(tiny_pipeline, tmp_path):
    """The run root is disposable: `experiment table` commits each finished cell's summary (its
    specification, figures and curve) and a cell made under the plan's current specification is not
    trained again; one that needs it reads it; a changed specification is not taken from it."""
    import shutil

    import yaml

    plan = _plan(tmp_path, tiny_pipeline / "teacher.npz", {"bpd": {"args": TINY_DISTILL}}, bench=True)
    runs, results = tmp_path / "root" / "tiny", tmp_path / "benchmarks" / "results" / "tiny"  # the plan's default
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "start"], check=True)
    assert _run_plan(plan, runs).returncode == 0
    # the lander tabulates the finished cell and commits the plan's results directory alone, named by the cell
    land = [sys.executable, str(ROOT / "benchmarks" / "land.py"), str(plan), "--runs-root", str(tmp_path / "root"),
            "--once"]
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")
    p = subprocess.run(land, capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr
    log = subprocess.run([*git, "log", "--format=%s", "--name-only", "-1"], capture_output=True, text=True).stdout
    assert log.startswith("Tiny: InvertedPendulum-v5/bpd/seed0 ") and "nonzero)" in log.splitlines()[0]
    assert "benchmarks/results/tiny/cells/InvertedPendulum-v5/bpd/seed0.json" in log
    assert all(f.startswith("benchmarks/results/tiny/") for f in log.splitlines()[1:] if f)  # not plan.yaml
    assert subprocess.run(land, capture_output=True, text=True, timeout=300, env=env).returncode == 0
    assert subprocess.run([*git, "rev-list", "--count", "HEAD"], capture_output=True, text=True).stdout.strip() == "2"
    bad = subprocess.run([*land[:2], str(tmp_path / "nope.yaml"), "--once"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "nope.yaml: no such plan file" in bad.stdout and "Traceback" not in bad.stderr
    run_bpd("experiment", "table", str(plan), "--runs", str(runs))
    committed = json.loads((results / "cells" / "InvertedPendulum-v5" / "bpd" / "seed0.json").read_text())
    assert committed["spec"]["args"] == TINY_DISTILL and len(committed["spec_digest"]) == 16
    assert committed["train"]["curve"]["step"][-1] == 200 and len(committed["train"]["curve"]["return"]) >= 2
    assert committed["machine"]["processor"]
    first_table = (results / "table.md").read_text()
    shutil.rmtree(runs)

    out = run_bpd("experiment", "status", str(plan), "--runs", str(runs)).stdout
    assert "1 done (1 of them committed summaries the run root lacks" in out
    assert re.search(r"done  InvertedPendulum-v5/bpd/seed0  training \d+ s  \(committed summary\)", out), out
    run_bpd("experiment", "table", str(plan), "--runs", str(runs))
    again = (results / "table.md").read_text()
    assert "| bpd | 1/1 |" in again and "over 1 invocation(s)" in again  # the session, from sessions.json
    assert again.split("## ")[0] == first_table.split("## ")[0]
    assert "InvertedPendulum-v5.curves.png" in again  # drawn from the committed curve

    raw = yaml.safe_load(plan.read_text())
    raw["methods"]["dense-small"] = {"args": TINY_DISTILL}
    plan.write_text(yaml.safe_dump(raw))
    p = _run_plan(plan, runs)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "1 finished cells restored" in p.stdout and "1 of 2 cells already done" in p.stdout
    bpd_dir = runs / "InvertedPendulum-v5" / "bpd" / "seed0"
    assert not (bpd_dir / "cell.log").exists() and not (bpd_dir / "run").exists()  # not trained again
    assert json.loads((bpd_dir / "cell.json").read_text())["restored_from"] == \
        "benchmarks/results/tiny/cells/InvertedPendulum-v5/bpd/seed0.json"
    small = json.loads((runs / "InvertedPendulum-v5" / "dense-small" / "seed0" / "result.json").read_text())
    assert small["train"]["hidden"] == committed["export"]["widths"][1:-1]
    # --retrain: the restored cell holds no products (checkpoints, student), so it is trained again
    p = _run_plan(plan, runs, "--retrain", "--only", "InvertedPendulum-v5/bpd/")
    assert p.returncode == 0 and "1 restored cell (committed summaries, no products) to train again" in p.stdout, \
        p.stdout + p.stderr
    assert (bpd_dir / "run" / "student.pt").exists() and "restored_from" not in json.loads(
        (bpd_dir / "cell.json").read_text())
    # marked for it before it begins: another runner's restore leaves the mark alone, and status counts it pending
    from bpd_app.experiment import load_plan
    from bpd_app.experiment.results import restore_committed
    from bpd_app.experiment.status import plan_status

    kept = {f: (bpd_dir / f).read_text() for f in ("cell.json", "result.json")}
    (bpd_dir / "cell.json").write_text(json.dumps({"cell": "InvertedPendulum-v5/bpd/seed0", "state": "retrain"}))
    (bpd_dir / "result.json").unlink()
    loaded = load_plan(plan, str(runs))
    assert "InvertedPendulum-v5/bpd/seed0" not in restore_committed(loaded)
    assert {r["cell"]: r["state"] for r in plan_status(loaded)}["InvertedPendulum-v5/bpd/seed0"] == "pending"
    for f, text in kept.items():
        (bpd_dir / f).write_text(text)

    run_bpd("experiment", "table", str(plan), "--runs", str(runs))
    small_path = results / "cells" / "InvertedPendulum-v5" / "dense-small" / "seed0.json"
    small_committed = small_path.read_text()
    assert json.loads(small_committed)["needs_digests"] == {"bpd": committed["spec_digest"]}  # what sized it

    raw["methods"]["bpd"]["args"] = TINY_DISTILL | {"steps": 300}  # another specification for bpd
    plan.write_text(yaml.safe_dump(raw))
    # the run root still holds both: neither is tabulated, and neither overwrites a committed summary
    run_bpd("experiment", "table", str(plan), "--runs", str(runs))
    md = (results / "table.md").read_text()
    assert "| bpd | 1/1 |" not in md and "| dense-small | 1/1 |" not in md
    assert "was run with another specification" in md
    assert "dense-small/seed0 was made from a bpd cell that has since been run with another specification" in md
    assert small_path.read_text() == small_committed
    shutil.rmtree(runs)  # and lost: dense-small is not restored, since the bpd cell that sized it has changed
    status = run_bpd("experiment", "status", str(plan), "--runs", str(runs)).stdout
    assert "0 done" in status and "2 pending" in status
    p = _run_plan(plan, runs, "--only", "InvertedPendulum-v5/dense-small/")
    assert "restored" not in p.stdout and "needs InvertedPendulum-v5/bpd/seed0, which has not finished" in p.stdout


def _restored(plan, key: str, sha: str) -> None:
    """A cell as `experiment run` restores it: a committed summary in its run directory, no products."""
    d = plan.runs / key
    d.mkdir(parents=True)
    (d / "result.json").write_text(json.dumps({"product_sha256": sha}))
    (d / "cell.json").write_text(json.dumps({"cell": key, "state": "done", "restored_from": "cells/x.json"}))


def test_a_cell_that_reads_a_restored_cells_products_has_it_trained_again_first(tmp_path):
    """dense-c50 reads the bpd cell's export, which a committed summary does not keep; dense-small reads only
    the summary's widths; the reselection reads its needed cut's run, and the cut the bpd cell's export."""
    from bpd_app.experiment.runner import _restored_needs_with_products

    teacher = ROOT / "benchmarks" / "teachers" / "InvertedPendulum-v5.npz"
    cut = "bpd-units-finetune-pairs-warmup-c50-visits-sure"
    plan = load_plan(_plan(tmp_path, teacher, {"bpd": {}, "dense-small": {}, "dense-c50": {}, cut: {},
                                               f"{cut}-reselect": {}}, bench=True), str(tmp_path / "runs"))
    cells = {c.key.split("/")[1]: c for c in plan.cells()}
    _restored(plan, "InvertedPendulum-v5/bpd/seed0", "aa")
    assert _restored_needs_with_products(plan, [cells["dense-small"]]) == {}
    assert list(_restored_needs_with_products(plan, [cells["dense-c50"], cells["dense-small"]])) == [
        "InvertedPendulum-v5/bpd/seed0"]
    _restored(plan, f"InvertedPendulum-v5/{cut}/seed0", "bb")  # and the cut, which needs the bpd cell's export
    assert sorted(c.label for c in _restored_needs_with_products(plan, [cells[f"{cut}-reselect"]]).values()) == [
        "bpd", cut]


def test_a_summary_sized_from_a_student_trained_again_no_longer_answers_the_plan(tmp_path):
    """needs_products names the student a cell was sized from: the needed cell trained again into another
    student (its result's hash) makes it stale; the same student, or a summary that records none, does not."""
    from bpd_app.experiment.plan import stale_reason

    teacher = ROOT / "benchmarks" / "teachers" / "InvertedPendulum-v5.npz"
    plan = load_plan(_plan(tmp_path, teacher, {"bpd": {}, "magnitude-prune": {}}), str(tmp_path / "runs"))
    bpd, child = sorted(plan.cells(), key=lambda c: c.label)
    made = {"needs_products": {"bpd": "aa"}}
    assert stale_reason(plan, child, made) is None  # nothing to compare with yet
    committed = plan.committed_path(bpd)
    committed.parent.mkdir(parents=True)
    committed.write_text(json.dumps({"product_sha256": "aa"}))
    assert stale_reason(plan, child, made) is None
    bpd.dir.mkdir(parents=True)
    (bpd.dir / "result.json").write_text(json.dumps({"product_sha256": "cc"}))  # the run root's, read first
    assert stale_reason(plan, child, made) == "was made from a bpd cell that has since been trained again into " \
        "another student"
    assert stale_reason(plan, child, {}) is None
    assert stale_reason(plan, child, {"needs_products": {"bpd": None}}) is None


def test_sessions_count_each_invocation_once_and_overlaps_once(tmp_path):
    from bpd_app.experiment.plan import Plan
    from bpd_app.experiment.sessions import merged_sessions, sessions_wall_seconds

    runs, out = tmp_path / "runs", tmp_path / "out"
    runs.mkdir()
    out.mkdir()
    a = {"started": "2026-11-23T09:00:00", "pid": 10, "wall_seconds": 300.0}
    (out / "sessions.json").write_text(json.dumps({"sessions": [a]}))  # committed while it still ran
    (runs / "sessions.json").write_text(json.dumps({"sessions": [
        a | {"wall_seconds": 9000.0}, {"started": "2026-11-23T09:00:00", "pid": 11, "wall_seconds": 600.0}]}))
    plan = Plan(tmp_path / "p.yaml", "p", tmp_path, runs, [], [], {}, {}, {}, False, {}, {})
    merged = merged_sessions(plan, out)
    assert sorted((s["pid"], s["wall_seconds"]) for s in merged) == [(10, 9000.0), (11, 600.0)]
    assert sessions_wall_seconds(merged) == 9000.0  # the second ran inside the first
    later = {"started": "2026-11-23T12:00:00", "wall_seconds": 100.0}
    summed = {"started": "before 2026-11-22T23:00 (run root lost)", "wall_seconds": 50.0}
    assert sessions_wall_seconds(merged + [later, summed]) == 9150.0


def test_plan_through_ray(tiny_pipeline, tmp_path):
    pytest.importorskip("ray", reason="Ray is an optional extra (pip install -e '.[ray]')")
    # one cell: Ray's workers set OMP_NUM_THREADS, so their stages start as fresh processes (tests/bpd_client.py)
    plan = _plan(tmp_path, tiny_pipeline / "teacher.npz", {"bpd": {"args": TINY_DISTILL}})
    runs = tmp_path / "runs"
    p = _run_plan(plan, runs, "--engine", "ray")
    assert p.returncode == 0, p.stdout + p.stderr
    res = json.loads((runs / "InvertedPendulum-v5" / "bpd" / "seed0" / "result.json").read_text())
    assert res["seed"] == 0 and res["eval"]["return_mean"] > 0
    status = run_bpd("experiment", "status", str(plan), "--runs", str(runs)).stdout
    assert "1 done" in status


def test_student_select_judges_in_the_environment_given(tiny_pipeline, tmp_path):
    """`bpd student select --env`: the candidates and the teacher are judged in that environment, the choice
    is recorded with it, and an environment of another shape is refused in one line."""
    import shutil

    from training.selection import load_candidates
    from training.student import load_student

    run = tmp_path / "run"
    shutil.copytree(tiny_pipeline / "run", run)
    steps = {c.step for c in load_candidates(run / "candidates.pt")}
    p = run_bpd("student", "select", str(run), "--keep-return", "0.001", "--episodes", "1",
                "--env", "InvertedPendulum-v5", "--out", "kept.pt")
    assert "(target kept)" in p.stdout
    _, meta, _ = load_student(run / "kept.pt")
    assert meta["selection"]["env"] == "InvertedPendulum-v5" and meta["step"] in steps
    bad = run_bpd("student", "select", str(run), "--env", "Pendulum-v1", "--episodes", "1", check=False)
    assert bad.returncode == 1 and bad.stderr.strip().splitlines() == [
        "bpd: error: --env Pendulum-v1 has 3 observations and 1 actions, the student 4 and 1"]
    # the run's own rule again, but with every candidate judged rather than the periodic near-best ones, and by
    # the run's own cost: distill's default filled the pair partners, so the DSP kernel's multiply-adds
    p = run_bpd("student", "select", str(run), "--rule", "sparsest-within", "--tol", "0.5", "--episodes", "1",
                "--out", "within.pt")
    assert f"every candidate judged; smallest by smlad, {len(steps)} candidates judged)" in p.stdout
    _, meta, _ = load_student(run / "within.pt")
    assert meta["step"] in steps and "within 50 %" in meta["selection"]["rule"]
    bad = run_bpd("student", "select", str(run), "--rule", "sparsest-within", "--tol", "1.5", check=False)
    assert bad.returncode == 1 and bad.stderr.strip().splitlines() == [
        "bpd: error: --tol is a fraction of the best return, at least 0 and below 1, e.g. 0.02"]


def test_student_select_out_elsewhere_keeps_the_runs_data_for_the_export(tiny_pipeline, tmp_path):
    """`bpd student select --out DIR` wrote a file named DIR where DIR/ did not exist yet (and refused one that did),
    and a student written outside the run lost the run's dataset and teacher: `bpd export` of it calibrated on
    uniform states with no teacher's figures. A directory now gets DIR/selected.pt, and the file records its run
    (relative to itself), through which the export finds the run's dataset and teacher as for one in the run."""
    import shutil

    from export.export import load_source

    run = tmp_path / "run"
    shutil.copytree(tiny_pipeline / "run", run)
    (tmp_path / "there").mkdir()
    for out in (tmp_path / "sel.pt", tmp_path / "there", f"{tmp_path / 'new'}/"):
        p = run_bpd("student", "select", str(run), "--keep-return", "0.001", "--episodes", "1", "--out", str(out))
        written = Path(out) if str(out).endswith(".pt") else Path(out) / "selected.pt"
        assert p.stdout.startswith(f"selected: {written} ") and written.is_file()
        src = load_source(written)
        assert Path(src.dataset).resolve() == (tiny_pipeline / "dataset.npz").resolve()
        assert Path(src.teacher).resolve() == (tiny_pipeline / "teacher.npz").resolve()
    inside = load_source(run / "student.pt")
    assert (inside.dataset, inside.teacher) == (src.dataset, src.teacher)
    alone = tmp_path / "moved" / "alone"  # a copy moved away from the run it names (../run): no run's data, as before
    alone.mkdir(parents=True)
    shutil.copy(tmp_path / "there" / "selected.pt", alone / "selected.pt")
    assert (load_source(alone / "selected.pt").dataset, load_source(alone / "selected.pt").teacher) == (None, None)


def test_the_export_of_compress_hand_over_reads_the_chosen_runs_data(tiny_pipeline, tmp_path):
    """`bpd compress` hands over OUT/student.pt, a copy of the chosen method's OUT/METHOD/selected.pt, with no run
    beside it: its export calibrated on uniform states and found no teacher. It now reads the chosen run's
    (compress.json's choice), as for the student in that run; a run of another dataset is not taken."""
    import shutil

    from export.export import load_source

    out = tmp_path / "comp"
    shutil.copytree(tiny_pipeline / "run", out / "l1-threshold")
    shutil.copy(out / "l1-threshold" / "student.pt", out / "student.pt")
    (out / "compress.json").write_text(json.dumps({"chosen": "l1-threshold", "rows": []}))
    src = load_source(out / "student.pt")
    assert Path(src.dataset).resolve() == (tiny_pipeline / "dataset.npz").resolve()
    assert Path(src.teacher).resolve() == (tiny_pipeline / "teacher.npz").resolve()
    cfg = json.loads((out / "l1-threshold" / "config.json").read_text())
    (out / "l1-threshold" / "config.json").write_text(json.dumps(cfg | {"dataset_sha256": "0" * 64}))
    assert load_source(out / "student.pt").dataset is None


def test_table_names_the_kind_of_torch_kernel_each_seed_ran_with_where_an_environment_mixes_kinds():
    """Hand-made rows: one kind throughout gives no note; mixed kinds name each method's seeds by kind."""
    from bpd_app.experiment.tables import kernels_note

    one = [{"label": "bpd", "per_seed": [{"seed": 0, "kernels": "AVX2"}, {"seed": 1, "kernels": "AVX2"}]}]
    assert kernels_note(one) == ""
    assert kernels_note([{"label": "bpd", "per_seed": []}]) == ""
    mixed = [{"label": "bpd", "per_seed": [{"seed": 0, "kernels": None}, {"seed": 2}, {"seed": 1}]},
             {"label": "dense-small", "per_seed": [{"seed": 1, "kernels": "AVX2"}, {"seed": 0, "kernels": "AVX512"},
                                                   {"seed": 2, "kernels": "AVX2"}]}]
    note = kernels_note(mixed)
    assert note.endswith(": bpd unrecorded (seeds 0, 1, 2), dense-small AVX2 (seeds 1, 2); AVX512 (seed 0).")


def test_compress_hands_over_the_cheapest_student_that_keeps_the_return(tiny_pipeline, tmp_path):
    """Two methods on the tiny teacher and dataset: each run trained, its students judged and measured, the
    cheapest that keeps the (low) target handed over, the comparison written; a second call resumes
    (trains nothing); a method that needs another cell is refused in one line."""
    import shutil as sh

    if sh.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc not installed")
    pytest.importorskip("unicorn")
    out = tmp_path / "comp"
    args = ["compress", "--teacher", str(tiny_pipeline / "teacher.npz"), "--dataset",
            str(tiny_pipeline / "dataset.npz"), "--out", str(out), "--steps", "100", "--keep-return", "0.01",
            "--episodes", "1", "--confirm", "2", "--methods", "bpd-units-finetune", "l1-threshold"]
    run_bpd(*args)
    res = json.loads((out / "compress.json").read_text())
    least = min(r["falls"] for r in res["rows"])  # the falls check is on by default: recorded for every run
    kept = sorted((r for r in res["rows"] if r["keep_return_met"] and r["falls"] == least),
                  key=lambda r: (r["cost"], -r["select_return"]))
    judged = [r for r in kept if "confirm" in r]  # judged again on 2 more episodes, cheapest first, until one holds
    assert judged and judged == kept[:len(judged)] and all(r["confirm"]["episodes"] == 2 for r in judged)
    holds = [r for r in judged if r["confirm"]["holds"]]
    if res["confirmed"]:
        assert holds == [judged[-1]] and res["chosen"] == judged[-1]["method"]
    else:
        assert not holds and judged == kept and "none kept it there" in res["rule"]
    assert res["kept"] is True and "fewest selection episodes the teacher finishes" in res["rule"]
    assert (out / "student.pt").read_bytes() == (out / res["chosen"] / "selected.pt").read_bytes()
    assert "Handed over" in (out / "compress.md").read_text()
    second = run_bpd(*args)
    assert "bpd distill" not in second.stdout  # both runs finished: nothing trained again
    bad = run_bpd("compress", "--teacher", str(tiny_pipeline / "teacher.npz"), "--dataset",
                  str(tiny_pipeline / "dataset.npz"), "--out", str(tmp_path / "bad"), "--methods", "magnitude-prune",
                  check=False)
    assert bad.returncode == 1 and "does not train a student from the teacher and dataset alone" in bad.stderr
    alone = run_bpd("compress", "--teacher", str(tiny_pipeline / "teacher.npz"), "--dataset",
                    str(tiny_pipeline / "dataset.npz"), "--out", str(tmp_path / "alone"), "--methods",
                    "bpd-units-finetune-pairs-warmup-c50-long", check=False)
    assert alone.returncode == 1 and alone.stderr.count("\n") == 1 and "name bpd too" in alone.stderr


def test_compress_prefers_the_fewest_falls_then_the_cheapest_that_keeps_the_return():
    """Over runs: a cheaper student that falls on a selection episode the teacher finishes loses to a dearer one
    that does not; among equal falls, the cheapest that keeps the return; none keeping it: the highest return."""
    from bpd_app.compress import choose_run

    def row(m, cost, ret, kept, falls):
        return {"method": m, "cost": cost, "select_return": ret, "keep_return_met": kept, "falls": falls}

    assert choose_run([row("a", 10, 99, True, 1), row("b", 20, 98, True, 0)])["method"] == "b"
    assert choose_run([row("a", 10, 99, True, 0), row("b", 20, 98, True, 0)])["method"] == "a"
    assert choose_run([row("a", 10, 50, False, 0), row("b", 20, 60, False, 0), row("c", 5, 99, True, 2)]
                      )["method"] == "b"
    assert choose_run([row("a", 10, 99, True, None), row("b", 5, 98, True, None)])["method"] == "b"  # unrecorded


def test_compress_hands_over_its_student_whole_or_not_at_all(tmp_path, monkeypatch):
    """OUT/student.pt was a plain copy: a compress run again into its --out and stopped (Ctrl-C, kill) while it
    copied left a student cut short under the name `bpd export OUT/student.pt` reads. Now it is written atomically:
    stopped once the bytes are out, the previous student stays byte for byte and nothing else is left."""
    import bpd.io
    from bpd_app.compress import hand_over

    out, run = tmp_path / "comp", tmp_path / "comp" / "bpd"
    run.mkdir(parents=True)
    (run / "selected.pt").write_bytes(b"new student " * 1000)
    (out / "student.pt").write_bytes(b"previous student")

    def stopped(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(bpd.io.os, "fsync", stopped)
    with pytest.raises(KeyboardInterrupt):
        hand_over(run / "selected.pt", out)
    monkeypatch.undo()
    assert (out / "student.pt").read_bytes() == b"previous student" and sorted(p.name for p in out.iterdir()) == [
        "bpd", "student.pt"]
    hand_over(run / "selected.pt", out)
    assert (out / "student.pt").read_bytes() == b"new student " * 1000


def test_compress_and_select_flags_for_the_falls_check():
    """The check is on by default in compress (--allow-falls turns it off) and asked for in student select
    (--no-falls) and distill (--select-no-falls)."""
    import argparse

    from bpd.config import add_arguments, from_namespace
    from bpd_app.compress import CompressConfig
    from training.distill_config import DistillConfig
    from training.selection import SelectConfig

    def parse(cls, *argv):
        ap = argparse.ArgumentParser()
        add_arguments(ap, cls)
        return from_namespace(cls, ap.parse_args(list(argv)))

    base = ["--teacher", "t.npz", "--dataset", "d.npz"]
    assert parse(CompressConfig, *base).allow_falls is False
    assert parse(CompressConfig, *base, "--allow-falls").allow_falls is True
    assert parse(CompressConfig, *base).low_share == 0.5
    assert parse(CompressConfig, *base, "--low-share", "0").low_share == 0.0
    assert parse(SelectConfig, "run").no_falls is False and parse(SelectConfig, "run", "--no-falls").no_falls is True
    assert parse(DistillConfig, *base, "--select-no-falls").select_no_falls is True


def test_compress_orders_the_reference_run_first_and_sizes_the_cut_against_it(tiny_pipeline, tmp_path):
    """The cut to half the paper BPD's cycles named before bpd: bpd runs first, its student's integer kernel is
    measured (recorded in compress.json) and the cut's command carries the budget bpd_cycles_budget gives from
    that student and those cycles."""
    import shutil as sh

    from bpd_app.compress import CompressConfig, _check
    from bpd_app.methods import bpd_cycles_budget

    if sh.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc not installed")
    pytest.importorskip("unicorn")
    cut = "bpd-units-finetune-pairs-warmup-c50-long"
    cfg = CompressConfig(teacher=str(tiny_pipeline / "teacher.npz"), dataset=str(tiny_pipeline / "dataset.npz"),
                         methods=[cut, "bpd"])
    assert _check(cfg) == ["bpd", cut]
    out = tmp_path / "comp"
    run_bpd("compress", "--teacher", cfg.teacher, "--dataset", cfg.dataset, "--out", str(out), "--steps", "100",
            "--keep-return", "0.01", "--episodes", "1", "--methods", cut, "bpd")
    res = json.loads((out / "compress.json").read_text())
    assert [r["method"] for r in res["rows"]] == ["bpd", cut]
    ref = res["rows"][0]["reference_integer"]
    assert ref["cycles"] > 0 and ref["instructions"] > 0
    cmd = res["rows"][1]["command"].split()
    budget = bpd_cycles_budget(CellInputs("E", 0, "t", "d", out / cut, {}, {"bpd": {
        "student": str(out / "bpd" / "student.pt"), "bench": {"integer": ref}}}), 0.49)
    assert float(cmd[cmd.index("--prune-to-cycles") + 1]) == pytest.approx(budget)


def test_a_cut_with_a_cycles_reference_is_sized_against_that_files_bpd_row(tmp_path, monkeypatch):
    """Hand-set figures: the bpd student's layers cost 1,000 cycles of its 1,500-cycle kernel. Cut to 0.49 of its own
    cell: 1,000 - 1,500 + 0.49 * 1,500 = 235. With a cost.json whose bpd row of the same seed costs 1,200: 1,000 -
    1,500 + 0.49 * 1,200 = 88, and the option stays out of distill's command. A file without that row is refused."""
    import types

    import bpd_app.methods as methods
    import firmware_host.measure.dsp_meter as dsp_meter

    monkeypatch.setattr(methods, "collapsed_student", lambda p: types.SimpleNamespace(weights=[np.ones((2, 2))]))
    monkeypatch.setattr(dsp_meter, "mask_cycles", lambda masks, act: 1000.0)
    deps = {"bpd": {"student": "s.pt", "bench": {"integer": {"cycles": 1500.0}}}}
    cost = tmp_path / "cost.json"
    cost.write_text(json.dumps({"rows": [
        {"cell": "E/bpd/seed1", "integer_form": "pairs", "cortex-m4f": {"integer": {"cycles": 1200.0}}},
        {"cell": "E/bpd/seed2", "integer_form": "pairs", "cortex-m4f": {"integer": {"cycles": 900.0}}}]}))
    own = CellInputs("E", 1, "t", "d", tmp_path / "c", {}, deps)
    assert methods.bpd_cycles_budget(own, 0.49) == pytest.approx(235.0)
    ref = CellInputs("E", 1, "t", "d", tmp_path / "c", {methods.REFERENCE_ARG: str(cost)}, deps)
    assert methods.bpd_cycles_budget(ref, 0.49) == pytest.approx(88.0)
    cmd = methods.get("bpd-units-finetune-pairs-warmup-c50-visits-sure").command(ref)
    assert float(cmd[cmd.index("--prune-to-cycles") + 1]) == pytest.approx(88.0)
    assert "--cycles-reference" not in cmd and str(cost) not in cmd
    with pytest.raises(BpdError, match="no row of E/bpd/seed0"):
        methods.bpd_cycles_budget(CellInputs("E", 0, "t", "d", tmp_path / "c", {methods.REFERENCE_ARG: str(cost)},
                                             deps), 0.49)
    noisy = methods.get("bpd-units-finetune-pairs-warmup-c50-visits-sure-ema-low-vnoise").command(own)
    flags = dict(zip(noisy, noisy[1:]))
    assert (flags["--finetune-visit-noise"], flags["--finetune-visits"], flags["--select-low-share"]) == (
        str(methods.VISIT_NOISE), str(methods.VISITS), str(methods.LOW_SHARE))
    assert flags["--finetune-ema"] == str(methods.EMA) and float(flags["--prune-to-cycles"]) == pytest.approx(235.0)


def test_a_plan_reads_its_cycles_reference_when_loaded_and_the_cells_spec_holds_the_figure(tmp_path):
    """A reference without the bpd row of a plan's seed is refused when the plan is read (not hours later, when the
    cut runs after its bpd cell); with the rows there, each cut cell's spec (its digest) holds its seed's figure, so
    that a new reference makes the finished cell stale."""
    from bpd_app.experiment.plan import cell_spec

    env, cut = "InvertedPendulum-v5", "bpd-units-finetune-pairs-warmup-c50-visits-sure"
    cost = tmp_path / "cost.json"
    cost.write_text(json.dumps({"rows": [
        {"cell": f"{env}/bpd/seed0", "integer_form": "pairs", "cortex-m4f": {"integer": {"cycles": 700.0}}}]}))
    teacher = tmp_path / "t.npz"
    teacher.write_bytes(b"")
    methods = {"bpd": {}, "cut-ref": {"method": cut, "args": {"cycles_reference": str(cost)}}}
    with pytest.raises(BpdError, match=f"'cut-ref': cycles_reference .* no row of {env}/bpd/seed1"):
        load_plan(_plan(tmp_path, teacher, methods, bench=True, seeds=(0, 1)))
    plan = load_plan(_plan(tmp_path, teacher, methods, bench=True))
    cell = next(c for c in plan.cells() if c.label == "cut-ref")
    assert cell_spec(plan, cell)["reference_cycles"] == 700.0
    assert "reference_cycles" not in cell_spec(plan, next(c for c in plan.cells() if c.label == "bpd"))


def test_largest_drop_below_the_running_best_in_the_second_half():
    from bpd_app.experiment.stats import largest_drop

    curve = {"step": [1, 2, 3, 4, 5, 6], "return": [100.0, 500.0, 300.0, 900.0, 700.0, 850.0]}
    assert largest_drop(curve, 1000.0) == pytest.approx(0.2)  # 900 then 700, late half: steps >= 3
    assert largest_drop({"step": [1, 2], "return": [1.0, 2.0]}, 10.0) == 0.0
    assert largest_drop(None, 10.0) is None and largest_drop(curve, None) is None


def test_compress_gives_its_dense_networks_the_longest_runs_gradient_steps(tmp_path):
    """Equal budgets: the dense methods run after every other method (whatever order they were named in), and
    equal_steps is the most steps a finished run before them took (warm-up included: 38,000 against 20,000); no
    finished run, no override."""
    from bpd_app.compress import CompressConfig, _check, equal_steps

    cfg = CompressConfig(teacher=__file__, dataset=__file__,
                         methods=["dense-c30", "bpd-units-finetune-pairs-warmup", "dense-c50", "bpd", "l1-threshold"])
    try:
        order = _check(cfg)
    except BpdError as e:  # the sized methods need the cross compiler and the emulator to measure the bpd run
        pytest.skip(str(e))
    assert order == ["bpd", "bpd-units-finetune-pairs-warmup", "l1-threshold", "dense-c30", "dense-c50"]
    for name, steps in (("a", 20_000), ("b", 38_000)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps({"steps": steps, "kl_warmup_steps": steps - 20_000}))
    (tmp_path / "c").mkdir()  # not finished: no summary
    assert equal_steps([tmp_path / "a", tmp_path / "b", tmp_path / "c"]) == 38_000
    assert equal_steps([tmp_path / "c"]) is None and equal_steps([]) is None
    (tmp_path / "c" / "summary.json").write_text('{"steps": 4')  # damaged outside bpd: one line, not a traceback
    with pytest.raises(BpdError, match=r"c/summary.json: corrupt run summary \(not valid JSON\)"):
        equal_steps([tmp_path / "c"])


def test_compress_leaves_out_a_method_whose_every_candidate_is_a_constant(tiny_pipeline, tmp_path, monkeypatch,
                                                                          capsys):
    """`student select` refuses a run whose every candidate is a constant (training.selection.AllConstant); compress
    leaves that method out, says so and judges the others, and refuses in one line where no method is left."""
    import bpd.process
    import training.selection
    from bpd.errors import BpdError
    from bpd_app.compress import CompressConfig, run_compress

    def trained(cmd):  # each method's run, as its command would leave it
        run = Path(cmd[cmd.index("--out") + 1])
        run.mkdir(parents=True, exist_ok=True)
        (run / "student.pt").write_bytes(b"student")
        (run / "summary.json").write_text("{}")
        return 0

    def select(cfg, meter=None):
        run = Path(cfg.run)
        if run.name in constant:
            raise training.selection.AllConstant("every candidate at threshold 3 is a constant")
        (run / "selected.pt").write_bytes(b"selected " + run.name.encode())
        return {"chosen": {"step": 100, "threshold": 3.0, "params_nonzero": 50, "cost": 500.0, "select_return": 90.0,
                           "falls": 0}, "teacher_select_return": 100.0, "keep_return_met": False,
                "out": str(run / "selected.pt")}

    monkeypatch.setattr(bpd.process, "run_bpd", trained)
    monkeypatch.setattr(training.selection, "run_select", select)
    base = dict(teacher=str(tiny_pipeline / "teacher.npz"), dataset=str(tiny_pipeline / "dataset.npz"), confirm=0,
                methods=["bpd-units-finetune", "l1-threshold"])
    constant = {"bpd-units-finetune"}
    res = run_compress(CompressConfig(out=str(tmp_path / "a"), **base), meter=None)
    assert [r["method"] for r in res["rows"]] == ["l1-threshold"] and res["chosen"] == "l1-threshold"
    assert "[bpd-units-finetune] left out: every candidate at threshold 3 is a constant" in capsys.readouterr().out
    assert (tmp_path / "a" / "student.pt").read_bytes() == b"selected l1-threshold"
    constant = {"bpd-units-finetune", "l1-threshold"}
    with pytest.raises(BpdError, match="no method gave a student that is not a constant"):
        run_compress(CompressConfig(out=str(tmp_path / "b"), **base), meter=None)


def test_compress_stopped_says_the_same_command_resumes_it(monkeypatch, capsys, tmp_path):
    """Ctrl-C in `bpd compress` printed 'bpd: interrupted' (twice, with its run's own distill) and no word of how to
    go on; the run in hand's note spoke of its distill's --resume. Known answer: compress's line names its output
    and says the same compress command resumes, without --resume."""
    import bpd_app.compress
    from bpd_app.cli import main

    def stopped(cfg, meter):
        raise KeyboardInterrupt

    monkeypatch.setattr(bpd_app.compress, "run_compress", stopped)
    code = main(["compress", "--teacher", "t.npz", "--dataset", "d.npz", "--out", str(tmp_path / "comp")])
    assert code == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"bpd: interrupted: the runs so far are kept in {tmp_path / 'comp'}; the same `bpd compress` command resumes "
        "them (no --resume)")


def test_compress_by_nonzero_hands_over_the_fewest_nonzero_and_writes_its_table(tiny_pipeline, tmp_path, monkeypatch,
                                                                                 capsys):
    """`--cost nonzero` (what compress's own message names as the way without arm-none-eabi-gcc): `student select`
    records no cost there (its count is params_nonzero), so every row's cost was None, the order fell to the return
    alone (the 50-nonzero student handed over before the 30-nonzero one) and compress.md ended in a TypeError after
    every run had trained. Known answer: the 30-nonzero student, its count in the line and the table."""
    import bpd.process
    import training.selection
    from bpd_app.compress import CompressConfig, run_compress

    def trained(cmd):
        run = Path(cmd[cmd.index("--out") + 1])
        run.mkdir(parents=True, exist_ok=True)
        (run / "student.pt").write_bytes(b"student")
        (run / "summary.json").write_text("{}")
        return 0

    def select(cfg, meter=None):  # as run_select gives it for --cost nonzero: no "cost" in the rows
        run = Path(cfg.run)
        (run / "selected.pt").write_bytes(b"selected " + run.name.encode())
        n = {"bpd-units-finetune": 50, "l1-threshold": 30}[run.name]
        return {"chosen": {"step": 100, "threshold": 3.0, "params_nonzero": n, "select_return": 99.0 - n / 10,
                           "falls": 0}, "teacher_select_return": 100.0, "keep_return_met": True,
                "out": str(run / "selected.pt")}

    monkeypatch.setattr(bpd.process, "run_bpd", trained)
    monkeypatch.setattr(training.selection, "run_select", select)
    res = run_compress(CompressConfig(teacher=str(tiny_pipeline / "teacher.npz"), cost="nonzero",
                                      dataset=str(tiny_pipeline / "dataset.npz"), confirm=0, out=str(tmp_path / "c"),
                                      methods=["bpd-units-finetune", "l1-threshold"]), meter=None)
    assert res["chosen"] == "l1-threshold" and [r["cost"] for r in res["rows"]] == [50, 30]
    assert "[l1-threshold] step 100: 30 nonzero, 30 nonzero parameters, return 96.0" in capsys.readouterr().out
    assert "| l1-threshold | 100 | 30 | 30 | 96.0 |" in (tmp_path / "c" / "compress.md").read_text()


def test_compress_md_names_its_cost_columns_unit():
    """compress.md's cost column was headed by the flag's value alone ('m4f-cycles', 'flash': bytes of what?), while
    the printed line gave the unit; the header now gives both."""
    from bpd_app.compress import markdown

    row = {"method": "bpd", "step": 10, "params_nonzero": 50, "cost": 812.0, "select_return": 990.0,
           "teacher_select_return": 1000.0, "keep_return_met": True, "falls": 0, "confirm": None}
    res = {"env_id": "E", "chosen": "bpd", "rule": "r", "cost": "flash", "keep_return": 0.99, "rows": [row]}
    header = markdown(res).splitlines()[4]
    assert "| flash: B est. Cortex-M4F policy flash (select's meter, before export) |" in header
    assert markdown(res).splitlines()[6].startswith("| bpd | 10 | 50 | 812 | 990.0")
