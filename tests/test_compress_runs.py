"""benchmarks/compress_runs.py: one seed's record from a hand-built compress.json and hand-built episodes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("compress_runs",
                                               Path(__file__).parents[1] / "benchmarks" / "compress_runs.py")
assert _spec is not None and _spec.loader is not None
compress_runs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compress_runs)


def _res(chosen: str, cost: float, ref_cost: float = 1000.0) -> dict:
    rows = [{"method": "bpd", "step": 5, "params_nonzero": 400, "cost": ref_cost, "select_return": 90.0,
             "teacher_select_return": 100.0, "keep_return_met": False, "falls": 1},
            {"method": chosen, "step": 9, "params_nonzero": 100, "cost": cost, "select_return": 99.5,
             "teacher_select_return": 100.0, "keep_return_met": True, "falls": 0, "dense_steps": 40000,
             "confirm": {"return": 99.0, "teacher_return": 100.0, "early_ends_where_teacher_finished": 0,
                         "episodes": 20, "holds": True}}]
    return {"chosen": chosen, "kept": True, "confirmed": True, "rule": "r", "cost": "m4f-cycles", "rows": rows}


def _ep(returns: list[float], terminated: list[bool]) -> dict:
    n = len(returns)
    mean = sum(returns) / n
    return {"returns": returns, "terminated": terminated, "return_mean": mean,
            "return_std": (sum((r - mean) ** 2 for r in returns) / n) ** 0.5, "return_min": min(returns),
            "episodes": n, "seed": 0}


TEACHER = _ep([100.0, 100.0, 100.0, 50.0], [False, False, False, True])


def test_meets_the_bar_at_half_the_cycles_and_the_return():
    r = compress_runs.seed_row(_res("dense-c30", 500.0), _ep([99.0, 100.0, 100.0, 97.0], [False] * 4), TEACHER)
    assert r["cycles_vs_reference"] == 0.5
    assert abs(r["return_vs_teacher"] - 396.0 / 350.0) < 1e-12
    assert r["early_ends"] == 0
    assert r["meets_bar"] is True
    assert [m["method"] for m in r["methods"]] == ["bpd", "dense-c30"]
    assert r["methods"][1]["dense_steps"] == 40000


def test_misses_the_bar_on_cycles_on_an_early_end_and_on_the_return():
    assert compress_runs.seed_row(_res("dense-c50", 501.0), _ep([100.0] * 4, [False] * 4), TEACHER)[
        "meets_bar"] is False  # 0.501x the cycles
    early = compress_runs.seed_row(_res("dense-c30", 300.0), _ep([100.0] * 4, [True, False, False, False]), TEACHER)
    assert early["early_ends"] == 1 and early["meets_bar"] is False
    # an early end where the teacher too ended early does not count
    ok = compress_runs.seed_row(_res("dense-c30", 300.0), _ep([100.0, 100.0, 100.0, 50.0], [False, False, False, True]),
                                TEACHER)
    assert ok["early_ends"] == 0 and ok["meets_bar"] is True
    low = compress_runs.seed_row(_res("dense-c30", 300.0), _ep([98.0, 98.0, 98.0, 50.0], [False] * 4), TEACHER)
    assert low["return_vs_teacher"] < 0.99 and low["meets_bar"] is False


def test_markdown_names_the_choice_and_every_method():
    r = compress_runs.seed_row(_res("dense-c30", 500.0), _ep([100.0] * 4, [False] * 4), TEACHER) | {"machine": "cpu"}
    doc = {"env": "E-v0", "teacher": "t.npz", "dataset": "d.npz", "dataset_note": "n", "seeds": [0, 1],
           "episodes": 4, "eval_seed": 0, "teacher_reporting": TEACHER, "rows": {"0": r}}
    md = compress_runs.markdown(doc)
    assert "| 0 | `dense-c30` | 100 | 500 (0.50x) |" in md
    assert "The bar met on 1 of 1 seeds run, of 2." in md
    assert "| `bpd` | its schedule | 400 | 1,000 | 90.0 (90.0 %) | no | 1 | - |" in md
    assert "| `dense-c30` | 40,000 | 100 | 500 | 99.5 (99.5 %) | yes | 0 | 99.0 %, 0 falls of 20: holds |" in md


def test_results_record_no_path_of_the_machine(tmp_path):
    root = Path(__file__).parents[1]
    assert compress_runs.shown(str(root / "benchmarks" / "teachers" / "Hopper-v5.npz")) == \
        "benchmarks/teachers/Hopper-v5.npz"
    assert compress_runs.shown(str(tmp_path / "runs" / "data.npz")) == "data.npz"


def test_update_merges_seeds_and_runs_the_teacher_once():
    calls = []

    def teacher():
        calls.append("teacher")
        return TEACHER

    def student(where):
        calls.append(where)
        return _ep([100.0] * 4, [False] * 4)

    doc = compress_runs.update({}, {0: ("run0", _res("dense-c30", 400.0))}, [0, 1, 2], student, teacher, "cpu")
    assert calls == ["teacher", "run0"] and list(doc["rows"]) == ["0"] and doc["seeds"] == [0, 1, 2]
    assert doc["rows"]["0"]["evaluated_on"] == "cpu"
    # a later call with one more seed: the teacher's episodes are kept, seed 0 is not run again, seeds join
    doc2 = compress_runs.update(doc, {2: ("run2", _res("dense-c50", 600.0))}, [2], student, teacher, "cpu")
    assert calls == ["teacher", "run0", "run2"]
    assert sorted(doc2["rows"]) == ["0", "2"] and doc2["seeds"] == [0, 1, 2]
    assert doc2["rows"]["2"]["meets_bar"] is False  # 0.6x the cycles


def test_a_seed_without_the_paper_bpd_run_has_no_ratio_and_misses():
    res = _res("dense-c30", 400.0)
    res["rows"] = [r for r in res["rows"] if r["method"] != "bpd"]
    r = compress_runs.seed_row(res, _ep([100.0] * 4, [False] * 4), TEACHER) | {"evaluated_on": "cpu"}
    assert r["cycles_vs_reference"] is None and r["meets_bar"] is False
    doc = {"env": "E-v0", "teacher": "t.npz", "dataset": "d.npz", "dataset_note": "n", "seeds": [0], "episodes": 4,
           "eval_seed": 0, "teacher_reporting": TEACHER, "rows": {"0": r}}
    assert "| 0 | `dense-c30` | 100 | 400 (-) |" in compress_runs.markdown(doc)


def test_check_result_names_what_is_wrong():
    import pytest

    from bpd.errors import BpdError

    good = _res("dense-c30", 400.0) | {"env_id": "E-v0", "dataset": "/x/d.npz"}
    assert compress_runs.check_result(good, "w", "E-v0", "d.npz") is good
    for bad, msg in [([], "not a compress.json"), (good | {"env_id": "F-v0"}, "a compress of F-v0"),
                     (good | {"cost": "nonzero"}, "not m4f-cycles"), (good | {"dataset": "e.npz"}, "not d.npz"),
                     (good | {"chosen": "l1"}, "has no row with a measured cost")]:
        with pytest.raises(BpdError, match=msg):
            compress_runs.check_result(bad, "w", "E-v0", "d.npz")


def test_the_command_line_refuses_bad_input_in_one_line(tmp_path):
    import subprocess
    import sys

    script = Path(__file__).parents[1] / "benchmarks" / "compress_runs.py"
    teacher = Path(__file__).parents[1] / "benchmarks" / "teachers" / "Hopper-v5.npz"
    (tmp_path / "seed0").mkdir()
    (tmp_path / "seed0" / "compress.json").write_text("{not json")
    for extra, msg in [(["--teacher", str(tmp_path / "none.npz")], "no such teacher file"),
                       (["--teacher", str(teacher), "--episodes", "0"], "at least one"),
                       (["--teacher", str(teacher)], "unreadable")]:
        p = subprocess.run([sys.executable, str(script), "--env", "Hopper-v5", "--dataset", "d.npz", "--runs",
                            str(tmp_path), "--seeds", "0", "--out", str(tmp_path / "out"), *extra],
                           capture_output=True, text=True)
        assert p.returncode != 0 and msg in p.stderr and "Traceback" not in p.stderr, p.stderr
