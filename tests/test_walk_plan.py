"""A plan as a researcher first writes it: its mistakes are one line each, an --only that selects nothing says so, a
stopped runner records its running cells as interrupted (not done without their figures, not failed), a SIGKILLed
runner leaves no stage running, and status and --retrain say what they keep."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from bpd.errors import BpdError
from bpd_app.experiment import cells
from bpd_app.experiment.plan import _digest, cell_spec, load_plan
from bpd_app.experiment.runner import run_plan, select_cells
from bpd_app.experiment.status import plan_status
from tests.conftest import ROOT, run_bpd

TEACHER = ROOT / "benchmarks" / "teachers" / "InvertedPendulum-v5.npz"
ARGS = {"steps": 300, "eval_every": 100}
GOOD = {"name": "walk", "envs": ["InvertedPendulum-v5"], "seeds": [0, 1], "teachers": {"InvertedPendulum-v5": "t.npz"},
        "dataset": {"steps": 1000}, "eval": {"episodes": 2}, "bench": True,
        "methods": {"bpd": {"args": ARGS}, "magnitude-prune": {"args": ARGS}}}


def _write(tmp: Path, plan: dict) -> Path:
    p = tmp / "plan.yaml"
    p.write_text(yaml.safe_dump(plan))
    return p


def _methods(**kw) -> dict:
    return GOOD | {"methods": GOOD["methods"] | kw}


@pytest.mark.parametrize("plan, message", [
    (_methods(**{"magnitude-prune": None, "magnitude-prun": {}}),
     r"unknown method 'magnitude-prun' \(did you mean 'magnitude-prune'\?"),
    (_methods(mp={"method": "magnitude-prun"}), r"method 'mp': unknown method 'magnitude-prun' \(did you mean"),
    (_methods(**{"magnitude-prune": {"steps": 300}}),
     r"method 'magnitude-prune' takes method, args, needs and dataset, not steps \(a method's options go under args:"),
    (_methods(bpd={"args": ARGS | {"dataset": {"noise": 0.3}}}),
     r"args of 'bpd' set dataset, which the runner sets for each cell \(a method's own dataset: its `dataset:` key"),
    (_methods(bpd={"args": ARGS | {"seed": 3}}), "args of 'bpd' set seed, which the runner sets for each cell"),
    (GOOD | {"env_args": {"InvertedPendulum-v5": {"teacher": "x.npz"}}}, "env_args of InvertedPendulum-v5 set teacher"),
    (_methods(**{"magnitude-prune": {"needs": {"bpd": "bpd-x"}}}),
     r"'magnitude-prune' needs: \{bpd: bpd-x\} names no method of the plan \(its labels: bpd, magnitude-prune\)"),
    (_methods(**{"magnitude-prune": {"needs": "bpd"}}), "needs of 'magnitude-prune' maps a method it needs to a plan"),
    (_methods(**{"magnitude-prune": {"needs": {"bdp": "bpd"}}}),
     "needs of 'magnitude-prune' names bdp, but method 'magnitude-prune' needs only bpd"),
    (_methods(bpd={"needs": {"bpd": "bpd"}}), "needs of 'bpd' names bpd, but method 'bpd' needs no other cell"),
    (GOOD | {"eval": {"episode": 2}}, "eval takes episodes and seed, not episode"),
    (GOOD | {"bench": "maybe"}, "bench must be true or false"),
    (GOOD | {"seeds": 3}, "'seeds' must be a list"),
    (GOOD | {"seeds": [0, 100]}, r"seeds must be between 0 and 99 \(got 100\): a run seed has 1000 evaluation seeds"),
    (GOOD | {"teachers": {"InvertedPendulm-v5": "t.npz"}}, "no teacher for InvertedPendulum-v5"),
    (GOOD | {"results": "../results"}, r"results must be a relative path inside the plan's directory, /"),
    # a label names its cells' directories: '..' put them beside the environment's, 'bpd/x' inside bpd's cells
    (_methods(**{"..": {"method": "bpd"}}), r"method label '\.\.' must start with a letter or digit and hold only"),
    (_methods(**{"bpd/x": {"method": "bpd"}}), r"method label 'bpd/x' must start with a letter or digit and hold only "
     r"letters, digits, '-', '_' or '\.' \(it names its cells' directories\)"),
    (GOOD | {"methods": {}}, "methods is empty: a plan runs at least one cell"),  # a run of no cells, exit 0
    (GOOD | {"envs": []}, "envs is empty: a plan runs at least one cell"),
    # options for an environment the plan does not run (a typo of one it does) were dropped silently
    # a method sized from its bpd cell: its args were checked only once that cell had trained (hours, on a real plan)
    (_methods(**{"magnitude-prune": {"args": {"stesp": 300}}}),
     r"method 'magnitude-prune' for InvertedPendulum-v5: bpd distill --teacher: unrecognized arguments: --stesp 300"),
    (_methods(rk={"method": "rusu-kl", "args": {"size": "dense", "steps": 1.5}}),
     r"method 'rk' for InvertedPendulum-v5: bpd baseline train: argument --steps: invalid int value: '1.5'"),
    (GOOD | {"env_args": {"InvertedPendulm-v5": {"steps": 10}}},
     r"env_args names InvertedPendulm-v5, which is not among the plan's envs \(InvertedPendulum-v5\)"),
])
def test_a_first_plans_mistakes_are_one_line_each(tmp_path, plan, message):
    p = _write(tmp_path, plan)
    with pytest.raises(BpdError, match=message) as e:
        load_plan(p)
    assert "\n" not in str(e.value) and str(e.value).startswith(str(p))


REAL = GOOD | {"teachers": {"InvertedPendulum-v5": str(TEACHER)}}


@pytest.mark.parametrize("args, message", [
    ({"size": "prunned"}, r"method 'rk' for InvertedPendulum-v5: its args do not make a command \(size must be one of "
                          r"pruned, dense, large, not 'prunned'\)"),
    ({"size_from": "bdp"}, r"its args do not make a command \(size_from 'bdp' is not 'bpd', the cell its needs: names"),
])
def test_a_baselines_size_is_checked_when_the_plan_is_read_not_once_its_bpd_cell_has_trained(tmp_path, args, message):
    """A baseline's size and size_from are read from the bpd cell's result: a typo there failed each of its cells
    after that cell had trained (hours, on a real plan), the plan check taking any failure on its stand-in result
    for a method that reads the needed cell's files."""
    with pytest.raises(BpdError, match=message):
        load_plan(_write(tmp_path, REAL | {"methods": GOOD["methods"] | {"rk": {"method": "rusu-kl", "args": args}}}))
    assert load_plan(_write(tmp_path, REAL | {"methods": GOOD["methods"] | {"rk": {"method": "rusu-kl", "args": {
        "size": "large", "size_from": "bpd"}}}})).methods["rk"].args["size"] == "large"


def test_a_baseline_named_another_bpd_row_with_needs_is_sized_from_that_row(tmp_path):
    """`needs: {bpd: LABEL}` names the bpd row a sized method waits for; the baselines and online-sac-small then read
    that row's result (they looked for a row labelled bpd, which the runner had not handed them, and each cell
    failed once LABEL's cell had trained: 'the bpd cell ... records no architecture or nonzero count')."""
    from bpd_app.methods import CellInputs, get

    plan = load_plan(_write(tmp_path, REAL | {"methods": {"bpd-long": {"method": "bpd", "args": ARGS},
                                                          "rk": {"method": "rusu-kl", "needs": {"bpd": "bpd-long"}},
                                                          "sac": {"method": "online-sac-small",
                                                                  "needs": {"bpd": "bpd-long"}}}}))
    assert plan.methods["rk"].needs == {"bpd": "bpd-long"}
    dep = {"params_nonzero": 123, "train": {"hidden": [16, 12]}, "export": {"widths": [4, 9, 7, 1]}}
    c = CellInputs("InvertedPendulum-v5", 0, str(TEACHER), "d.npz", tmp_path / "run", {}, {"bpd-long": dep},
                   {"train": {"steps": 5000}})
    argv = get("rusu-kl").command(c)
    assert argv[argv.index("--nonzero") + 1] == "123" and argv[argv.index("--hidden") + 1:][:2] == ["16", "12"]
    argv = get("online-sac-small").command(c)
    assert argv[argv.index("--hidden") + 1:][:2] == ["9", "7"]


def test_the_plan_the_mistakes_were_made_in_loads(tmp_path):
    plan = load_plan(_write(tmp_path, GOOD))
    assert [c.key for c in plan.cells()] == ["InvertedPendulum-v5/bpd/seed0", "InvertedPendulum-v5/bpd/seed1",
                                             "InvertedPendulum-v5/magnitude-prune/seed0",
                                             "InvertedPendulum-v5/magnitude-prune/seed1"]
    assert plan.methods["magnitude-prune"].needs == {"bpd": "bpd"} and plan.bench is True


def test_an_only_that_selects_no_cell_is_an_error_not_an_empty_run(tmp_path):
    plan = load_plan(_write(tmp_path, GOOD), str(tmp_path / "runs"))
    assert [c.key for c in select_cells(plan, ["InvertedPendulum-v5/bpd/"])] == [
        "InvertedPendulum-v5/bpd/seed0", "InvertedPendulum-v5/bpd/seed1"]
    assert len(select_cells(plan, None)) == 4
    with pytest.raises(BpdError, match=r"--only bpd: no cell of plan walk has a key starting so \(keys are "
                                       r"ENV/LABEL/seedN, such as InvertedPendulum-v5/bpd/seed0"):
        select_cells(plan, ["bpd"])
    p = run_bpd("experiment", "run", str(tmp_path / "plan.yaml"), "--runs", str(tmp_path / "runs"), "--only", "bpd",
                check=False)
    # the plan's teacher t.npz is missing: that is said first, in one line
    assert p.returncode == 1 and p.stderr.count("\n") == 1 and "is missing" in p.stderr
    real = _write(tmp_path, GOOD | {"teachers": {"InvertedPendulum-v5": str(TEACHER)}})
    p = run_bpd("experiment", "run", str(real), "--runs", str(tmp_path / "runs"), "--only", "bpd", check=False)
    assert p.returncode == 1 and p.stderr.count("\n") == 1 and "--only bpd: no cell" in p.stderr, p.stderr
    assert not (tmp_path / "runs").exists()


def _stub(tmp: Path, monkeypatch, body: str) -> Path:
    stub = tmp / "stub-bpd"
    stub.write_text(f"#!{sys.executable}\n{body}")
    stub.chmod(0o755)
    monkeypatch.setenv("BPD_EXECUTABLE", str(stub))
    return stub


@pytest.mark.parametrize("stage", ["train", "export"])
def test_a_cell_whose_stage_the_runners_stop_ended_is_interrupted(tmp_path, monkeypatch, stage):
    """A stage the runner's stop ended: the cell is recorded interrupted (resumed by the next run), not failed, and,
    stopped in its export, not done without its export and bench figures as a failed export would leave it."""
    _stub(tmp_path, monkeypatch, "import time\ntime.sleep(30)\n")
    plan = load_plan(_write(tmp_path, GOOD | {"teachers": {"InvertedPendulum-v5": str(TEACHER)}}),
                     str(tmp_path / "runs"))
    cell = plan.cells()[0]
    if stage == "export":  # trained and evaluated: the export is next
        (cell.dir / "run").mkdir(parents=True)
        (cell.dir / "run" / "student.pt").write_bytes(b"")
        (cell.dir / "run" / "summary.json").write_text("{}")  # the run's last file: it finished
        (cell.dir / "eval.json").write_text("{}")
    cells.stop_stages(signal.SIGTERM)
    try:
        t = time.time()
        rec = cells.execute_cell(str(plan.path), cell.key, str(plan.runs))
    finally:
        cells.clear_stop()
    assert time.time() - t < 20
    assert rec["state"] == "interrupted" and rec["error"] == (
        f"stopped by SIGTERM in its {'distill' if stage == 'train' else 'export'} stage; "
        "`bpd experiment run` again resumes it")
    assert json.loads((cell.dir / "cell.json").read_text())["state"] == "interrupted"
    assert not (cell.dir / "result.json").exists()
    row = next(r for r in plan_status(plan) if r["cell"] == cell.key)
    assert row["state"] == "interrupted"


def test_a_stage_that_fails_by_itself_still_fails(tmp_path, monkeypatch):
    _stub(tmp_path, monkeypatch, "import sys\nprint('bpd: error: nope', file=sys.stderr)\nsys.exit(1)\n")
    with pytest.raises(cells.StageFailed, match="bpd distill exited 1: bpd: error: nope"):
        cells._run(["distill"], tmp_path / "log")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_sigkilled_runner_leaves_no_stage_running(tmp_path, monkeypatch):
    """SIGKILL reaches the runner alone: each stage it started gets SIGTERM as the runner dies (the guard
    cells.stage_command puts before it), so the next run does not resume a cell that a stage still writes into."""
    up, term = tmp_path / "up", tmp_path / "term"
    _stub(tmp_path, monkeypatch, f"import signal, sys, time\n"
          f"def stop(n, f):\n    open({str(term)!r}, 'w').write(str(n))\n    sys.exit(143)\n"
          f"signal.signal(signal.SIGTERM, stop)\nopen({str(up)!r}, 'w').close()\ntime.sleep(60)\n")
    runner = subprocess.Popen([sys.executable, "-c", "import sys; from pathlib import Path; "
                               "from bpd_app.experiment.cells import _run; _run(['distill'], Path(sys.argv[1]))",
                               str(tmp_path / "log")], cwd=ROOT, env=dict(os.environ))
    try:
        for _ in range(300):
            if up.exists() or runner.poll() is not None:
                break
            time.sleep(0.1)
        assert up.exists(), "the stage did not start"
        runner.kill()
        runner.wait(timeout=10)
        for _ in range(100):
            if term.exists() and term.read_text():  # written, not only created
                break
            time.sleep(0.1)
        assert term.read_text() == str(int(signal.SIGTERM))
    finally:
        runner.kill()


def test_stage_command_guards_the_stage_on_linux_and_runs_it_unchanged(tmp_path, monkeypatch):
    stub = _stub(tmp_path, monkeypatch, "import sys\nprint(' '.join(sys.argv[1:]))\n")
    cmd = cells.stage_command(["evaluate", "x.pt", "--json"])
    assert cmd[-4:] == [str(stub), "evaluate", "x.pt", "--json"]
    assert subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout == "evaluate x.pt --json\n"


def _done_here(plan, cell, committed: bool = False, state: str = "done") -> None:
    digest = _digest(cell_spec(plan, cell))
    cell.dir.mkdir(parents=True, exist_ok=True)
    (cell.dir / "cell.json").write_text(json.dumps({"cell": cell.key, "state": state, "spec_digest": digest,
                                                    "seconds": 40}))
    if state == "done":
        (cell.dir / "result.json").write_text(json.dumps({"spec_digest": digest, "train": {"seconds": 1}}))
    if committed:
        plan.committed_path(cell).parent.mkdir(parents=True, exist_ok=True)
        plan.committed_path(cell).write_text(json.dumps({"spec_digest": digest, "train": {"seconds": 1}}))


def test_status_says_a_committed_summary_stands_in_for_a_run_here_that_was_stopped(tmp_path):
    plan = load_plan(_write(tmp_path, GOOD | {"results": "results"}), str(tmp_path / "runs"))
    stopped, failed, restorable = plan.cells()[:3]
    _done_here(plan, stopped, committed=True, state="interrupted")
    _done_here(plan, failed, committed=True, state="failed")
    _done_here(plan, restorable, committed=True, state="pending")
    rows = {r["cell"]: r for r in plan_status(plan)}
    assert rows[stopped.key]["state"] == rows[failed.key]["state"] == rows[restorable.key]["state"] == "done"
    assert rows[stopped.key]["error"] == ("its run here was interrupted: `experiment run --retrain` resumes it, "
                                          "`experiment run` restores the summary")
    assert rows[failed.key]["error"].startswith("its run here failed:")
    assert rows[restorable.key]["error"] is None and rows[restorable.key]["committed"]


def test_retrain_says_it_keeps_the_cells_trained_in_the_run_root(tmp_path):
    plan = load_plan(_write(tmp_path, GOOD), str(tmp_path / "runs"))
    plan.runs.mkdir()
    (plan.runs / "plan.json").write_text(json.dumps({"plan": plan.rel(plan.path)}))
    cell = plan.cells()[0]
    _done_here(plan, cell)
    said: list[str] = []
    recs = run_plan(plan, only=[cell.key], echo=said.append, retrain=True)
    assert recs[cell.key]["state"] == "done"
    assert said == [f"--retrain keeps the 1 selected cell trained in this run root (remove a cell's directory, such "
                    f"as {cell.dir}, to train it again)", "1 of 1 cells already done"]


def test_a_stopped_runner_says_how_to_resume(tmp_path, monkeypatch):
    """The note `bpd: interrupted: ...` carries (bpd_app/cli.py prints it)."""
    from bpd_app.experiment import runner

    plan = load_plan(_write(tmp_path, GOOD), str(tmp_path / "runs"))

    def stop(job):
        raise KeyboardInterrupt  # Ctrl-C as the first cell's environment is being prepared

    monkeypatch.setattr(runner, "_local_engine", lambda plan, workers: (stop, None, lambda h, s, w: None, lambda: None))
    with pytest.raises(KeyboardInterrupt) as e:
        run_plan(plan, echo=lambda s: None)
    cells.clear_stop()
    assert e.value.bpd_note == runner.STOP_NOTE  # type: ignore[attr-defined]
    assert "again resumes them and keeps the finished ones" in runner.STOP_NOTE


def test_the_plan_formats_example_in_plan_py_is_a_plan_that_loads(tmp_path):
    """The format a first plan is written from (plan.py's docstring) is itself a valid plan."""
    from bpd_app.experiment import plan as plan_module

    doc = (plan_module.__doc__ or "").split("Plan format:\n")[1].split("Relative paths")[0]
    (tmp_path / "p.yaml").write_text("\n".join(line[4:] for line in doc.splitlines()))
    plan = load_plan(tmp_path / "p.yaml")
    assert plan.name == "quick" and plan.seeds == [0, 1, 2] and plan.bench is True
    assert plan.methods["bpd-noise-0.3"].dataset == {"noise": 0.3}
    assert plan.methods["magnitude-prune"].needs == {"bpd": "bpd-constant-eta"}
    assert plan.groups == {"KL schedule": ["bpd", "bpd-constant-eta"]}


def test_a_cell_another_runner_holds_is_left_to_it_with_the_cells_that_need_it(tmp_path, monkeypatch):
    """Two runners on one run root (a second terminal, or `--only` partitions): a cell the other holds is neither
    run twice nor failed, and a cell that needs it is left too; the run exits 0 with the count said."""
    import fcntl

    from bpd_app.experiment.commands import ExperimentRunConfig, cmd_run

    _stub(tmp_path, monkeypatch, "print('{}')\n")  # every stage succeeds at once (only prepare reaches it here)
    path = _write(tmp_path, GOOD | {"teachers": {"InvertedPendulum-v5": str(TEACHER)}})
    plan = load_plan(path, str(tmp_path / "runs"))
    held = plan.cells()[0]
    held.dir.mkdir(parents=True)
    (plan.runs / "plan.json").write_text(json.dumps({"plan": plan.rel(plan.path)}))  # the other runner's root
    with open(held.dir / ".runner.lock", "a") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert cells.execute_cell(str(path), held.key, str(plan.runs))["state"] == cells.BUSY
        assert not (held.dir / "cell.json").exists()
        said: list[str] = []
        recs = run_plan(plan, only=[held.key, "InvertedPendulum-v5/magnitude-prune/seed0"], echo=said.append)
        assert {k: r["state"] for k, r in recs.items()} == {held.key: "busy",
                                                             "InvertedPendulum-v5/magnitude-prune/seed0": "busy"}
        assert said == ["[1/2] InvertedPendulum-v5/bpd/seed0: left to another runner of this run root, which is "
                        "running it", "[2/2] InvertedPendulum-v5/magnitude-prune/seed0: left, it needs "
                        "InvertedPendulum-v5/bpd/seed0, which another runner is running"]
        cfg = ExperimentRunConfig(plan=str(path), runs=str(plan.runs), only=[held.key])
        assert cmd_run(cfg) == 0
    # a file system without locks (ENOLCK) is not taken for another runner holding the cell
    import errno

    def no_locks(f, how):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(OSError, match="No locks available"):
        cells.execute_cell(str(path), held.key, str(plan.runs))


def test_status_prints_a_running_cells_stage_and_a_committed_cells_training_time(monkeypatch, capsys):
    """A running cell says which stage it is in (its last command); a committed summary's seconds are its
    training's, said so (a restored cell took 1 s to restore, not to train)."""
    from types import SimpleNamespace

    import bpd_app.experiment.commands as commands
    from bpd_app.cli import _experiment_status

    row = {"error": None, "left_seconds": None, "estimate": None}
    rows = [row | {"cell": "E/bpd/seed0", "state": "running", "seconds": None, "stage": "export"},
            row | {"cell": "E/bpd/seed1", "state": "done", "seconds": 40.0, "committed": True, "stage": None},
            row | {"cell": "E/bpd/seed2", "state": "done", "seconds": 12.0, "stage": None}]
    monkeypatch.setattr(commands, "cmd_status", lambda cfg: rows)
    monkeypatch.setattr("bpd_app.cli.from_namespace", lambda cls, ns: None)
    _experiment_status(SimpleNamespace())
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == [" running  E/bpd/seed0  in its export stage",
                       "    done  E/bpd/seed1  training 40 s  (committed summary)",
                       "    done  E/bpd/seed2  12 s"]


def _one_env_plan(tmp_path: Path):
    """A plan of one environment (the committed InvertedPendulum teacher), one seed, BPD alone."""
    return load_plan(_write(tmp_path, {"name": "p", "envs": ["InvertedPendulum-v5"], "seeds": [0],
                                       "teachers": {"InvertedPendulum-v5": str(TEACHER)}, "methods": {"bpd": {}}}),
                     str(tmp_path / "runs"))


def test_two_runners_preparing_one_environment_collect_its_dataset_once(tmp_path, monkeypatch):
    """Runners sharing a run root prepare an environment one after the other: the second finds the dataset and
    the teacher's evaluation the first wrote, and collects nothing (each `bpd` stage stood in for by a 0.2 s one)."""
    import threading

    plan = _one_env_plan(tmp_path)
    ran, spans = [], []

    def stage(argv, log, stdout=None, cwd=None):
        t0 = time.monotonic()
        time.sleep(0.2)
        out = Path(stdout or argv[argv.index("--out") + 1])
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("{}")
        ran.append(argv[0])
        spans.append((t0, time.monotonic()))

    monkeypatch.setattr(cells, "_run", stage)
    runners = [threading.Thread(target=cells.prepare_env, args=(plan, "InvertedPendulum-v5")) for _ in range(2)]
    for t in runners:
        t.start()
    for t in runners:
        t.join()
    assert ran == ["collect", "evaluate"]  # once each, by whichever runner came first
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:]))


def test_a_runner_waiting_on_anothers_preparation_stops_with_its_stop(tmp_path, monkeypatch):
    """Another runner holds the environment's preparation; a stop (Ctrl-C) of this one ends its wait at once rather
    than after the other's dataset is collected."""
    import fcntl

    plan = _one_env_plan(tmp_path)
    (tmp_path / "runs").mkdir()
    monkeypatch.setattr(cells, "_run", lambda *a, **k: pytest.fail("prepared while another runner held it"))
    with open(tmp_path / "runs" / ".prepare-InvertedPendulum-v5.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        cells.stop_stages(signal.SIGTERM)
        try:
            t0 = time.monotonic()
            with pytest.raises(cells.StageStopped, match="stopped by SIGTERM while another runner prepared"):
                cells.prepare_env(plan, "InvertedPendulum-v5")
            assert time.monotonic() - t0 < 5
        finally:
            cells.clear_stop()


@pytest.mark.parametrize("retrain", [False, True])
def test_a_cell_reading_a_restored_cells_products_asks_for_retrain_or_has_it_trained_again(tmp_path, monkeypatch,
                                                                                          retrain):
    """dense-c50 reads the bpd cell's export, which a restored summary does not keep. Without --retrain it fails in
    one line naming the command (training the bpd cell again would replace its committed student), the bpd cell
    left as restored; with --retrain the bpd cell is trained again first."""
    _stub(tmp_path, monkeypatch, "print('{}')\n")
    path = _write(tmp_path, GOOD | {"seeds": [0], "teachers": {"InvertedPendulum-v5": str(TEACHER)},
                                    "methods": {"bpd": {"args": ARGS}, "dense-c50": {}}})
    plan = load_plan(path, str(tmp_path / "runs"))
    bpd = next(c for c in plan.cells() if c.label == "bpd")
    bpd.dir.mkdir(parents=True)
    (plan.runs / "plan.json").write_text(json.dumps({"plan": plan.rel(plan.path)}))
    digest = _digest(cell_spec(plan, bpd))
    (bpd.dir / "result.json").write_text(json.dumps({"spec_digest": digest, "product_sha256": "aa"}))
    (bpd.dir / "cell.json").write_text(json.dumps({"cell": bpd.key, "state": "done", "spec_digest": digest,
                                                   "restored_from": "cells/InvertedPendulum-v5/bpd/seed0.json"}))
    said: list[str] = []
    recs = run_plan(plan, echo=said.append, retrain=retrain, only=["InvertedPendulum-v5/dense-c50/"])
    cut = "InvertedPendulum-v5/dense-c50/seed0"
    if not retrain:
        assert recs[cut]["state"] == "failed" and recs[cut]["error"] == (
            "needs the export or student of InvertedPendulum-v5/bpd/seed0, restored from its committed summary "
            f"(which keeps neither): `bpd experiment run {plan.rel(path)} --retrain --only "
            "InvertedPendulum-v5/bpd/seed0` trains it again")
        assert json.loads((bpd.dir / "cell.json").read_text())["restored_from"]  # left as it was
    else:
        assert ("InvertedPendulum-v5/bpd/seed0: restored from its committed summary, which keeps no products; "
                "trained again, since a cell that needs it reads them") in said
        assert bpd.key in recs and "restored_from" not in json.loads((bpd.dir / "cell.json").read_text())


@pytest.mark.parametrize("label", ["dense-small", "dense-nonzero", "dense-c50", "bpd-units-finetune-pairs-warmup-c50"])
def test_a_method_sized_from_the_bpd_cells_export_is_refused_in_a_plan_without_bench(tmp_path, label):
    """A plan without bench: true makes no export and no measured cycles: a method sized from them is refused when
    the plan is read (its cells each failed after their bpd cell had trained, as 'internal error: BpdError')."""
    plan = _methods(**{label: {"args": ARGS}}) | {"bench": False}
    p = _write(tmp_path, plan)
    with pytest.raises(BpdError) as e:
        load_plan(p)
    assert str(e.value) == (f"{p}: method {label!r} is sized from its bpd cell's export or measured cycles, which "
                            "only a plan with bench: true makes")
    assert load_plan(_write(tmp_path, plan | {"bench": True})).methods[label].needs == {"bpd": "bpd"}
    assert load_plan(_write(tmp_path, _methods() | {"bench": False})).bench is False  # magnitude-prune: no export


def test_a_cell_whose_method_cannot_build_its_command_fails_with_the_methods_line_not_an_internal_error(tmp_path):
    """A BpdError from a method's command (what it is sized from is missing) is the cell's error as said, not a bug of
    the runner's (traceback in cell.log, 'internal error: BpdError: ...')."""
    plan = load_plan(_write(tmp_path, _methods(**{"dense-small": {"args": ARGS}})
                            | {"teachers": {"InvertedPendulum-v5": str(TEACHER)}}), str(tmp_path / "runs"))
    bpd0 = next(c for c in plan.cells() if c.key == "InvertedPendulum-v5/bpd/seed0")
    _done_here(plan, bpd0)  # finished, its result without an export
    rec = cells.execute_cell(str(plan.path), "InvertedPendulum-v5/dense-small/seed0", str(plan.runs))
    assert rec["state"] == "failed"
    assert rec["error"] == ("the bpd cell of InvertedPendulum-v5 seed 0 was not exported; dense-small needs its "
                            "collapsed widths (plan with bench: true)")


def test_a_run_stopped_between_its_student_and_its_summary_is_resumed_not_taken_as_trained(tmp_path, monkeypatch):
    """distill writes student.pt, then its plot, then summary.json: a runner stopped (or killed) between them left a
    product without the run's summary, which the next run took as trained, so the cell's result had no widths, no
    selection and a training time of 0 s (and magnitude-prune, sized from those widths, failed)."""
    calls = tmp_path / "calls"
    _stub(tmp_path, monkeypatch, f"import json, sys\nfrom pathlib import Path\n"
          f"open({str(calls)!r}, 'a').write(' '.join(sys.argv[1:3])"
          f" + ('' if '--resume' not in sys.argv else ' --resume') + '\\n')\n"
          "if sys.argv[1] == 'distill':\n"
          "    out = Path(sys.argv[sys.argv.index('--out') + 1])\n"
          "    (out / 'student.pt').write_bytes(b'student')\n"
          "    (out / 'summary.json').write_text(json.dumps({'seconds': 12.5, 'steps': 300, 'hidden': [64, 64]}))\n"
          "else:\n    print(json.dumps({'return_mean': 5.0, 'params_nonzero': 7}))\n")
    plan = load_plan(_write(tmp_path, GOOD | {"bench": False, "teachers": {"InvertedPendulum-v5": str(TEACHER)}}),
                     str(tmp_path / "runs"))
    cell = plan.cells()[0]
    run = cell.dir / "run"
    run.mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (run / "student.pt").write_bytes(b"student")  # the summary not yet written when the runner stopped
    (cell.dir / "cell.json").write_text(json.dumps({"cell": cell.key, "state": "interrupted"}))
    rec = cells.execute_cell(str(plan.path), cell.key, str(plan.runs))
    assert rec["state"] == "done", rec
    assert calls.read_text().splitlines() == ["distill --teacher --resume", "evaluate " + str(run / "student.pt")]
    train = json.loads((cell.dir / "result.json").read_text())["train"]
    assert (train["seconds"], train["hidden"]) == (12.5, [64, 64])
    calls.unlink()  # finished: nothing is run again
    assert cells.execute_cell(str(plan.path), cell.key, str(plan.runs))["state"] == "done" and not calls.exists()


@pytest.mark.parametrize("methods, line, key", [
    ("  bpd: {args: {steps: 300}}\n  bpd: {args: {steps: 600}}\n", 7, "bpd"),  # the label copied to vary it
    ("  bpd: {args: {steps: 300, steps: 600}}\n", 6, "steps"),
    ("  bpd: {}\nenvs: [Hopper-v5]\n", 7, "envs")])
def test_a_key_given_twice_in_a_plan_is_one_line_not_the_last_one_silently(tmp_path, methods, line, key):
    """YAML keeps the last of two equal keys: a method label copied to vary it ran one cell, not two."""
    p = tmp_path / "plan.yaml"
    p.write_text("name: walk\nenvs: [InvertedPendulum-v5]\nseeds: [0]\nteachers: {InvertedPendulum-v5: t.npz}\n"
                 f"methods:\n{methods}")
    with pytest.raises(BpdError) as e:
        load_plan(p)
    assert str(e.value) == (f"{p}: line {line}: {key!r} is given twice in one mapping (YAML would keep the last "
                            "silently)")
    if key == "bpd":  # the copy named apart: two methods
        p.write_text(p.read_text().replace("bpd: ", "bpd-600: {method: bpd, args: {steps: 600}}\n  bpd: ", 1)
                     .replace("  bpd: {args: {steps: 600}}\n", ""))
        assert [ms.args["steps"] for ms in load_plan(p).methods.values()] == [600, 300]


def test_a_resumed_cell_keeps_the_commands_and_times_of_the_stages_its_earlier_run_finished(tmp_path, monkeypatch):
    """cell.json's commands rerun a cell by hand: a runner stopped after the cell's training, resumed, recorded only
    the stages it ran itself (its evaluate), so the distill command and its time were gone from the record."""
    _stub(tmp_path, monkeypatch, "import json\nprint(json.dumps({'return_mean': 5.0}))\n")
    plan = load_plan(_write(tmp_path, GOOD | {"bench": False, "teachers": {"InvertedPendulum-v5": str(TEACHER)}}),
                     str(tmp_path / "runs"))
    cell = plan.cells()[0]
    (cell.dir / "run").mkdir(parents=True)
    for f in ("student.pt", "summary.json"):
        (cell.dir / "run" / f).write_text("{}")
    distill, evaluate = "bpd distill --teacher t.npz --out run", "bpd evaluate run/student.pt --env X"
    stopped = {"cell": cell.key, "state": "interrupted", "spec_digest": _digest(cell_spec(plan, cell)),
               "commands": [distill, evaluate], "stage_seconds": {"train": 31.0}}
    (cell.dir / "cell.json").write_text(json.dumps(stopped))
    rec = cells.execute_cell(str(plan.path), cell.key, str(plan.runs))
    assert rec["state"] == "done" and rec["commands"][0] == distill and len(rec["commands"]) == 2
    assert rec["commands"][1].startswith(f"bpd evaluate {cell.dir / 'run' / 'student.pt'} --env InvertedPendulum-v5")
    assert rec["stage_seconds"]["train"] == 31.0 and "evaluate" in rec["stage_seconds"]
    assert json.loads((cell.dir / "cell.json").read_text())["commands"] == rec["commands"]


def test_ray_absent_is_one_line_saying_how_to_install_it_before_the_run_says_what_it_will_do(tmp_path, monkeypatch,
                                                                                            capsys):
    """Without Ray, `--engine ray` printed 'plan walk: 4 cells in RUNS (ray, 2 workers)' and then the error: the line
    named a run root and an engine that were never used."""
    from bpd_app.experiment.commands import ExperimentRunConfig, cmd_run

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    path = _write(tmp_path, GOOD | {"teachers": {"InvertedPendulum-v5": str(TEACHER)}})
    with pytest.raises(BpdError) as e:
        cmd_run(ExperimentRunConfig(str(path), workers=2, engine="ray", runs=str(tmp_path / "runs")))
    assert str(e.value) == "--engine ray needs Ray: pip install -e '.[ray]' in the bpd checkout"
    assert capsys.readouterr().out == "" and not (tmp_path / "runs").exists()


def _prepared(plan) -> None:
    """The environment's dataset and teacher evaluation in place, so that a stub `bpd` is first called to train."""
    env = plan.envs[0]
    plan.dataset_path(env, plan.cell_dataset(plan.cells()[0].label)).parent.mkdir(parents=True, exist_ok=True)
    plan.dataset_path(env, plan.cell_dataset(plan.cells()[0].label)).write_bytes(b"")
    plan.teacher_eval_path(env).parent.mkdir(parents=True, exist_ok=True)
    plan.teacher_eval_path(env).write_text("{}")


def _ctrl_c_once(up, within: float) -> None:
    """A Ctrl-C to this process once the stage's stub has written `up` (or after `within` seconds)."""
    for _ in range(int(within * 10)):
        if up.exists():
            break
        time.sleep(0.1)
    os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.parametrize("engine, by", [("local", "SIGINT (Ctrl-C)"), ("ray", "the cancellation of its Ray task")])
def test_a_stopped_runner_stops_its_stages_and_records_its_cells_interrupted(tmp_path, monkeypatch, engine, by):
    """Ctrl-C to a runner on Ray: its tasks run in Ray's workers, out of the terminal's reach and the runner's, and
    were killed with the Ray instance, their cells left marked running (or, cancelled, recorded failed) and their
    stages unstopped. Each task is now cancelled, stops its stage as the local engine does, and records its cell
    interrupted, which status says and the next run resumes. On either engine the cell names what stopped it (the
    local one said SIGTERM, the signal it passes its stages, of a Ctrl-C) and the runner's time so far is kept (its
    session recorded 0 s, and the table's wall time left out the stopped invocation)."""
    import threading

    if engine == "ray":
        pytest.importorskip("ray", reason="Ray is an optional extra (pip install -e '.[ray]')")
    up, term = tmp_path / "up", tmp_path / "term"
    _stub(tmp_path, monkeypatch, f"import signal, sys, time\n"
          f"def stop(n, f):\n    open({str(term)!r}, 'w').write(str(n))\n    sys.exit(143)\n"
          f"signal.signal(signal.SIGTERM, stop)\nopen({str(up)!r}, 'w').close()\ntime.sleep(60)\n")
    plan = load_plan(_write(tmp_path, GOOD | {"teachers": {"InvertedPendulum-v5": str(TEACHER)}, "seeds": [0],
                                              "bench": False, "methods": {"bpd": {"args": ARGS}}}),
                     str(tmp_path / "runs"))
    _prepared(plan)
    (plan.runs / "plan.json").write_text(json.dumps({"plan": plan.rel(plan.path)}))

    threading.Thread(target=_ctrl_c_once, args=(up, 60.0), daemon=True).start()
    said: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        run_plan(plan, engine=engine, echo=said.append)
    cells.clear_stop()
    cell = plan.cells()[0]
    rec = json.loads((cell.dir / "cell.json").read_text())
    assert rec["state"] == "interrupted", rec
    assert rec["error"] == f"stopped by {by} in its distill stage; `bpd experiment run` again resumes it"
    assert term.read_text() == str(int(signal.SIGTERM))  # its stage stopped as Ctrl-C stops it: a checkpoint kept
    assert [r["state"] for r in plan_status(plan)] == ["interrupted"]
    (session,) = json.loads((plan.runs / "sessions.json").read_text())["sessions"]
    assert session["wall_seconds"] > 0


@pytest.mark.parametrize("name, error", [
    ("TaskCancelledError", "stopped by the cancellation of its Ray task"),
    ("WorkerCrashedError", "its Ray worker died (WorkerCrashedError: The worker died unexpectedly"),
])
def test_a_ray_task_cancelled_or_whose_worker_died_is_an_interrupted_cell(tmp_path, name, error):
    """Ray's errors for a task stopped from outside the runner (`ray job stop`, a forced cancel, a worker killed):
    the cell is interrupted, which the next run resumes, not failed; a forced cancel's error, which has no message,
    broke the runner with an IndexError. The runner records the cell, whose worker could not."""
    ray = pytest.importorskip("ray", reason="Ray is an optional extra (pip install -e '.[ray]')")
    from bpd_app.experiment.engines import _ray_outcome

    rec, err = _ray_outcome(ray, getattr(ray.exceptions, name)())
    assert err is None and rec["state"] == "interrupted" and rec["error"].startswith(error)
    assert _ray_outcome(ray, ray.exceptions.RayError()) == (None, "RayError")  # any other: an error, said
    plan = load_plan(_write(tmp_path, GOOD), str(tmp_path / "runs"))
    cell = plan.cells()[0]
    _done_here(plan, cell, state="running")
    assert cells.mark_interrupted(cell, rec["error"])
    assert [r["state"] for r in plan_status(plan)][:2] == ["interrupted", "pending"]
    assert json.loads((cell.dir / "cell.json").read_text())["error"] == f"{rec['error']}; {cells.RESUMES}"
    with open(cell.dir / ".runner.lock", "a") as held:  # another runner's: left alone
        import fcntl

        _done_here(plan, cell, state="running")
        fcntl.flock(held, fcntl.LOCK_EX)
        assert not cells.mark_interrupted(cell, rec["error"])


def test_the_table_counts_interrupted_cells_apart_from_those_not_run(tmp_path):
    """A cell stopped (recorded interrupted, or marked running by a process of this machine that is gone: a killed
    runner's or Ray worker's) was 'not run' in the table and 'running' in cells.csv, where status said interrupted."""
    from bpd_app.experiment.tables import write_table

    plan = load_plan(_write(tmp_path, GOOD), str(tmp_path / "runs"))
    stopped, killed = plan.cells()[:2]
    _done_here(plan, stopped, state="interrupted")
    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait()
    killed.dir.mkdir(parents=True)
    (killed.dir / "cell.json").write_text(json.dumps({"cell": killed.key, "state": "running", "pid": gone.pid,
                                                      "host": os.uname().nodename}))
    write_table(plan, tmp_path / "table")
    assert ("Cells: 0 done, 0 failed, 2 interrupted (the same `bpd experiment run` resumes them), 2 not run, of 4."
            in (tmp_path / "table" / "table.md").read_text())
    states = [line.split(",")[3] for line in (tmp_path / "table" / "cells.csv").read_text().splitlines()[1:]]
    assert sorted(states) == ["interrupted", "interrupted", "pending", "pending"]
    assert [r["state"] for r in plan_status(plan)].count("interrupted") == 2
    # a spreadsheet's STDEV divides by n - 1: the legend says which std the table gives
    assert "+- std: the population standard deviation over seeds (the squared deviations averaged over the n seeds, " \
           "not over n - 1 as a spreadsheet's STDEV: two seeds of 1000 and 100 give +- 450, not 636)" \
           in (tmp_path / "table" / "table.md").read_text()


def test_a_ctrl_c_to_a_stage_in_the_runners_own_thread_is_passed_on(tmp_path, monkeypatch):
    """`experiment run --rebench` runs its stages in the runner's main thread, where a Ctrl-C is the user's: it went
    on as KeyboardInterrupt ('bpd: interrupted'); the Ray cancellation's handling took it for a cancelled task, and the
    command ended in an internal error 'StageStopped: stopped by the cancellation of its Ray task'. In a Ray task
    (start_ray_task) it is the cancellation: the stage stopped, the cell's stage said stopped by it."""
    import threading

    up = tmp_path / "up"
    _stub(tmp_path, monkeypatch, f"import time\nopen({str(up)!r}, 'w').close()\ntime.sleep(30)\n")

    try:
        threading.Thread(target=_ctrl_c_once, args=(up, 30.0), daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            cells._run(["export"], tmp_path / "cell.log")
        assert cells._stopped_by() is None
        up.unlink()
        monkeypatch.setattr(cells, "_RAY_TASK", threading.Event())
        cells.start_ray_task()
        threading.Thread(target=_ctrl_c_once, args=(up, 30.0), daemon=True).start()
        with pytest.raises(cells.StageStopped, match="stopped by the cancellation of its Ray task in its export stage"):
            cells._run(["export"], tmp_path / "cell.log")
    finally:
        cells.clear_stop()
