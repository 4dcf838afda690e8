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
    to check."""
    import shutil

    from tests.conftest import pendulum_export

    exp = tmp_path / "export"
    shutil.copytree(pendulum_export(), exp)
    info = json.loads((exp / "export.json").read_text())
    (exp / "export.json").write_text(json.dumps(info | {"source": TEACHER}))
    for model in (exp, exp / "policy.onnx"):
        with pytest.raises(BpdError, match=r"overlap 10000\.\.10004, those of its training evaluations"):
            run_evaluate(EvaluateConfig(model=str(model), episodes=1, seed=10003))
    (exp / "export.json").write_text(json.dumps(info | {"source": str(tmp_path / "gone.npz")}))
    assert run_evaluate(EvaluateConfig(model=str(exp), episodes=1, seed=10003))["seeds"] == [10003, 10003]
