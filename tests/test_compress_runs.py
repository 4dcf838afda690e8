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
