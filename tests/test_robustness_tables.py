"""The robustness tables' decisions on hand-made results whose answers are known: which model a controller
runs (its hash), when a score in the JSON stands, the spread over seeds, the join of rotary.md's robustness
column, and robustness-students.md's tables (benchmarks/robustness_benchmark.py, robustness_students.py,
rotary_benchmark.py)."""

from __future__ import annotations

import hashlib
import json

import pytest

CATS = ("model", "velocity_noise", "torque_noise", "torque_response", "delay", "perturbation")


@pytest.fixture(scope="module")
def rb(benchmark_script):
    return benchmark_script("robustness_benchmark")


@pytest.fixture(scope="module")
def rs(benchmark_script):
    return benchmark_script("robustness_students")


def scored(overall: float, key: str | None = None, grid: dict | None = None, episodes: int = 3,
           cpu: float = 60.0, at: str = "2026-01-01T00:00:00+00:00") -> dict:
    """A controller's entry as the scripts write it, every category scoring `overall`."""
    return {"overall": overall, "model_key": key, "grid": grid or {"variations": 21},
            "episodes_per_variation": episodes,
            "categories": {c: {"score": overall, "variations": [{"ticks": t} for t in (0, 0, 1)] if c == "delay"
                               else []} for c in CATS}, "command": "cmd",
            "success_rule": "not terminated early", "nominal": {"success": 1.0}, "seconds": cpu, "cpu_seconds": cpu,
            "scored_at": at}


def export_dir(path, model_hash: str, kernel: str):
    path.mkdir(parents=True)
    (path / "export.json").write_text(json.dumps({"model_hash": model_hash, "kernel": kernel}))
    return path


def test_model_key_names_the_teacher_file_and_the_export_model_with_its_arithmetic(rb, tmp_path):
    t = tmp_path / "teacher.npz"
    t.write_bytes(b"PK weights")
    assert rb.model_key(t) == f"file {hashlib.sha256(b'PK weights').hexdigest()}"
    assert rb.model_key(export_dir(tmp_path / "f", "abc", "compact")) == "model abc (float)"
    assert rb.model_key(export_dir(tmp_path / "i", "abc", "integer-table")) == "model abc (integer)"
    assert rb.model_key(export_dir(tmp_path / "n", "", "generic")) is None
    assert rb.model_key(tmp_path / "missing") is None


def test_a_score_stands_for_the_same_grid_episodes_and_model(rb):
    old = scored(0.5, "model abc (float)")
    assert rb.kept(old, {"variations": 21}, 3, "model abc (float)")
    assert not rb.kept(old, {"variations": 21}, 3, "model abd (float)")  # retrained under the same name
    assert not rb.kept(old, {"variations": 21}, 5, "model abc (float)")
    assert not rb.kept(old, {"variations": 11}, 3, "model abc (float)")
    assert not rb.kept(None, {"variations": 21}, 3, None)
    assert rb.kept(scored(0.5), {"variations": 21}, 3, "model abc (float)")  # scored before keys: by its name


def test_seed_spread_gives_mean_population_std_and_worst_seed_per_kind(rb):
    ctrl = {"teacher": scored(0.99), "BPD bpd-s2 (float C)": scored(0.5), "BPD bpd-s0 (float C)": scored(0.9),
            "BPD bpd-s1 (float C)": scored(0.7), "BPD bpd-s0 (integer C)": scored(0.6)}
    s = rb.seed_spread(ctrl)
    assert list(s) == ["BPD students (float C)", "BPD students (integer C)"]
    f = s["BPD students (float C)"]
    assert f["seeds"] == [0, 1, 2]
    assert f["overall"]["mean"] == pytest.approx(0.7)
    assert f["overall"]["std"] == pytest.approx((0.08 / 3) ** 0.5)  # ddof=0: 0.163
    assert (f["overall"]["worst"], f["overall"]["worst_seed"]) == (0.5, 2)
    assert f["delay"]["worst_seed"] == 2
    assert s["BPD students (integer C)"]["overall"] == {"mean": 0.6, "std": 0.0, "worst": 0.6, "worst_seed": 0}
    lines = rb.summary(ctrl, list(CATS))
    assert "| BPD students (float C) | 3 | 0.700 +- 0.163; 0.500 (s2) |" in "\n".join(lines)


def test_rotary_column_joins_by_model_hash_and_arithmetic_only(benchmark_script):
    rot = benchmark_script("rotary_benchmark")
    robust = {"rigs": {"rotary-pendulum": {"controllers": {
        "teacher": scored(0.694, "file t1"), "BPD s0 (float C)": scored(0.728, "model m0 (float)"),
        "BPD s0 (integer C)": scored(0.725, "model m0 (integer)"), "energy+LQR (C)": scored(0.777)}}}}
    res = {"rig": "rotary-pendulum", "controllers": {
        "teacher rotary-pendulum": {"model_key": "file t1"}, "BPD student a": {"model_key": "model m0 (integer)"},
        "BPD student b": {"model_key": "model m9 (float)"}, "energy+LQR": {"model_key": None}, "old": {}}}
    got = {n: (m and m["name"]) for n, m in rot.robustness_scores(res, robust).items()}
    assert got == {"teacher rotary-pendulum": "teacher", "BPD student a": "BPD s0 (integer C)", "BPD student b": None,
                   "energy+LQR": None, "old": None}


def test_students_markdown_tables_each_environment_and_its_students(rs):
    cell = {"return_mean": 8128.2, "episodes": 30, "return_vs_teacher": 0.871, "params_nonzero": 475,
            "teacher_return_mean": 9328.1, "teacher_params_total": 68609, "model_hash": "m0", "restored_from": None,
            "exports": {"float C": "export", "integer C": "cost/int"}}
    restored = cell | {"restored_from": "benchmarks/results/students/cells/X.json", "exports": {}}
    grid = {"variations": 21, "mass": 0.25, "damping": [1.0], "coulomb": [2.0], "joints": None,
            "velocity_noise": [0.5], "torque_noise": [0.2], "response": [0.1, 2.0], "delay_s": 0.04, "period_s": 0.01,
            "push": 3.0, "push_joint": "foot", "push_duration_s": 0.1, "push_times_s": [2.0, 4.0]}
    res = {"plan": "benchmarks/plans/students.yaml", "plan_name": "students", "plan_envs": ["A-v5", "B-v5"], "seeds": 3,
           "envs": {"A-v5": {"grid": grid, "cells": {"A-v5/bpd/seed0": cell, "A-v5/bpd/seed1": cell,
                                                     "A-v5/bpd/seed2": restored},
                             "controllers": {"teacher": scored(0.8, cpu=120, at="2026-01-01T00:00:00+00:00"),
                                             "BPD bpd-s0 (float C)": scored(0.6, cpu=60),
                                             "BPD bpd-s1 (float C)": scored(0.4, cpu=60),
                                             "BPD bpd-s0 (integer C)": scored(0.5, cpu=60)}}}}
    t = rs.timing(res)
    assert t["first"]["controller"] == "teacher" and t["plan_controllers"] == 14  # 2 envs x (1 + 2 x 3)
    assert t["cpu_seconds_mean"] == pytest.approx(75.0) and t["plan_minutes"] == pytest.approx(17.5)
    md = rs.markdown(res)
    assert "| A-v5 | 0.800 | 0.500 +- 0.100; 0.400 (s1), 2 seeds | 0.500 (s0 only) | 3 (2) |" in md
    assert "| A-v5/bpd/seed0 | 8,128.2 (30 ep.) | 87.1 % | 475 | 0.600 | 0.500 |" in md
    assert "| A-v5/bpd/seed1 | 8,128.2 (30 ep.) | 87.1 % | 475 | 0.400 | - |" in md
    assert "| teacher | 9,328.1 | 100.0 % | 68,609 | 0.800 | - |" in md
    assert "A-v5/bpd/seed2: float C, integer C not scored: the cell was restored from its committed summary" in md
    assert "The delay sweep in whole ticks of 10 ms: 2 of 0 ticks, 1 of 1 tick." in md
    assert "come to about 18 min" in md and "on every joint but a floating base" in md


def test_experiment_table_joins_robustness_scores_by_model_hash(tmp_path):
    """A plan's `robustness:` file: each finished seed's float C score, joined by its export's model hash, in a
    column of the table; a seed whose model was not scored is left out and counted; a missing file is one line."""
    from bpd.errors import BpdError
    from bpd.io import write_json
    from bpd_app.experiment.tables import _robustness, robustness_scores

    class P:
        robustness = tmp_path / "r.json"

        @staticmethod
        def rel(p):
            return str(p)

    write_json(P.robustness, {"envs": {"E": {"controllers": {
        "BPD s0 (float C)": {"model_key": "model aa (float)", "overall": 0.5},
        "BPD s0 (integer C)": {"model_key": "model aa (integer)", "overall": 0.1},
        "BPD s1 (float C)": {"model_key": "model bb (float)", "overall": 0.7},
        "teacher": {"model_key": "file cc", "overall": 0.9}}}}})
    assert robustness_scores(P) == {"aa": 0.5, "bb": 0.7}
    assert _robustness({"robustness": [0.5, 0.7], "done": 3}) == "0.600 +- 0.100; worst 0.500 (2 of 3 scored)"
    assert _robustness({"robustness": [0.5], "done": 2}) == "0.500 (1 of 2 scored)"
    assert _robustness({"robustness": [], "done": 2}) == "-"
    P.robustness = tmp_path / "missing.json"
    with pytest.raises(BpdError, match="does not exist"):
        robustness_scores(P)


def test_portable_path_names_the_run_root_and_never_a_machine_path(tmp_path, monkeypatch):
    """A result records a path inside the project relative to it, one under $BPD_RUNS as $BPD_RUNS/..., and
    any other absolute path by its name alone."""
    from bpd.io import PROJECT_ROOT, portable_path

    runs = tmp_path / "runs"
    monkeypatch.setenv("BPD_RUNS", str(runs))
    monkeypatch.chdir(PROJECT_ROOT)
    assert portable_path(runs / "students" / "cell" / "export") == "$BPD_RUNS/students/cell/export"
    assert portable_path(PROJECT_ROOT / "benchmarks" / "x.json") == "benchmarks/x.json"
    assert portable_path(tmp_path / "elsewhere" / "f.npz") == "f.npz"
    monkeypatch.delenv("BPD_RUNS")
    assert portable_path(runs / "students" / "cell" / "export") == "export"
