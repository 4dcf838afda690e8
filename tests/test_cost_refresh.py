"""cost_benchmark's --refresh-kernels: the row's returns kept where the student is the row's, the row measured in
full where its cell now holds another student, and no row from integer builds that differ from the host C."""

import pytest

from bpd.errors import BpdError

ROW = {"cell": "Task/label/seed0", "model_hash": "aaa", "integer_error_vs_action_range": 0.0125,
       "float_kernel": "compact", "returns": {"float": {"return_mean": 100.0}}, "integer_over_float_return": 0.995,
       "cortex-m4f": {"integer": {"instructions": 900}}}


def _fresh(model_hash: str, error: float, host_c_error: float = 0.0) -> dict:
    return {"model_hash": model_hash, "integer_error_vs_action_range": error,
            "cortex-m4f": {"integer": {"instructions": 700, "max_abs_error_vs_host_c": host_c_error},
                           "compact": {"instructions": 1500}},
            "cortex-m0plus": {"integer": {"instructions": 2000, "max_abs_error_vs_host_c": 0.0}}}


@pytest.fixture
def cost(benchmark_script, monkeypatch):
    mod = benchmark_script("cost_benchmark")
    monkeypatch.setattr(mod.shutil, "which", lambda name: "/usr/bin/" + name)
    calls = []

    def with_returns(row, run, out, env_id, episodes, seed):
        calls.append(episodes)
        return row | {"float_kernel": "generated", "returns": {"float": {"return_mean": 200.0}},
                      "integer_over_float_return": 1.001}
    monkeypatch.setattr(mod, "with_returns", with_returns)
    mod.returns_calls = calls  # what the stand-in for with_returns was asked for
    return mod


@pytest.fixture
def refresh(cost, monkeypatch):
    def run(fresh: dict, episodes: int = 30) -> dict:
        monkeypatch.setattr(cost, "measure_student", lambda *a, **k: fresh)
        return cost.refresh_kernels(None, None, None, "Task", episodes, 7, dict(ROW))
    return run


def test_same_student_keeps_the_rows_returns(cost, refresh):
    r = refresh(_fresh("aaa", 0.0125))
    assert r["cortex-m4f"]["integer"]["instructions"] == 700  # the kernels measured again
    assert r["returns"] == ROW["returns"] and r["float_kernel"] == "compact" and r["table_refreshed"]
    assert "remeasured" not in r and cost.returns_calls == []


@pytest.mark.parametrize("fresh, why", [(("bbb", 0.0125), "model hash differs"),
                                        (("aaa", 0.0130), "integer model changed")])
def test_another_student_is_measured_in_full(cost, refresh, fresh, why):
    r = refresh(_fresh(*fresh))
    assert why in r["remeasured"] and "table_refreshed" not in r
    assert r["returns"]["float"]["return_mean"] == 200.0 and r["float_kernel"] == "generated"
    assert r["model_hash"] == fresh[0] and r["cell"] == ROW["cell"]
    assert cost.returns_calls == [cost.RETURN_EPISODES]  # the table's paired episodes, not the plan's count


def test_no_returns_when_the_plan_has_no_episodes(cost, refresh):
    r = refresh(_fresh("bbb", 0.0125), episodes=0)
    assert "returns" not in r and r["model_hash"] == "bbb" and cost.returns_calls == []


def test_builds_off_the_host_c_kernel_give_no_row(refresh):
    with pytest.raises(BpdError, match="cortex-m4f integer not the host C kernel's outputs"):
        refresh(_fresh("bbb", 0.0125, host_c_error=1e-3))


def test_generic_float_export_made_again_for_another_student(cost, tmp_path, monkeypatch):
    """The row's float kernel (the generic one, in an export of its own) is exported again where the cached one
    holds a student the cell held before, and reused where it holds this one."""
    import export.export as ex
    from bpd.io import write_json

    made = []

    def run_export(cfg, **kw):
        made.append(cfg.kernel)
        write_json(tmp_path / "out" / "float" / "export_report.json", {"model_hash": "new"})
    monkeypatch.setattr(ex, "run_export", run_export)
    write_json(tmp_path / "out" / "float" / "export_report.json", {"model_hash": "old"})
    rep = {"model_hash": "new", "kernel": {
        "variant": "integer", "flash_budget": 49152,
        "candidates": {"generic": {"cost": {"cycles": 100, "flash_bytes": 1000}},
                       "compact": {"cost": {"cycles": 300, "flash_bytes": 2000}},
                       "integer": {"cost": {"cycles": 50, "flash_bytes": 1500}}}}}
    assert cost.float_dir(tmp_path, tmp_path / "out", rep) == ("generic", tmp_path / "out" / "float")
    assert made == ["generic"]
    cost.float_dir(tmp_path, tmp_path / "out", rep)
    assert made == ["generic"]  # this student's export kept


def test_refresh_kernels_measures_a_cell_with_no_row_in_full(cost, tmp_path, monkeypatch):
    """--refresh-kernels over a plan: a row's cell refreshed, a finished cell with no row yet measured in full."""
    import json
    import sys
    from types import SimpleNamespace

    import bpd_app.experiment as exp
    from bpd.io import write_json

    cells = []
    for key in ("Task/old/seed0", "Task/new/seed0"):
        d = tmp_path / "runs" / key
        write_json(d / "result.json", {})
        write_json(d / "run" / "config.json", {"dataset": None})
        (d / "run" / "student.pt").write_bytes(b"")
        cells.append(SimpleNamespace(key=key, dir=d, env="Task"))
    plan = SimpleNamespace(cells=lambda: cells, eval={"episodes": 30, "seed": 0})
    monkeypatch.setattr(exp, "load_plan", lambda path, runs: plan)
    out = tmp_path / "out"
    write_json(out / "cost.json", {"rows": [dict(ROW, cell="Task/old/seed0")]})
    done = []
    monkeypatch.setattr(cost, "refresh_kernels", lambda run, o, *a: done.append(("refresh", a[-1]["cell"])) or a[-1])
    monkeypatch.setattr(cost, "measure_student", lambda run, o, *a: done.append(("full", run.parent.parent.name)) or {})
    monkeypatch.setattr(cost, "summarise", lambda rows: {})
    monkeypatch.setattr(cost, "markdown", lambda res: "")
    monkeypatch.setattr(sys, "argv", ["cost_benchmark.py", str(cost.ROOT / "benchmarks" / "plans" / "students.yaml"),
                                      "--out", str(out), "--refresh-kernels"])
    cost.main()
    assert done == [("refresh", "Task/old/seed0"), ("full", "new")]
    assert [r["cell"] for r in json.loads((out / "cost.json").read_text())["rows"]] == ["Task/old/seed0",
                                                                                       "Task/new/seed0"]


def test_a_reselection_is_measured_with_the_configuration_of_the_run_it_chose_from(benchmark_script, tmp_path):
    """A reselection's run holds its student and summary alone: its dataset is read from the needed cell's run of
    the same environment and seed (paths relative to that run); a cell with neither is one line, not a traceback."""
    import json
    from types import SimpleNamespace

    from bpd_app.experiment.plan import Cell

    mod = benchmark_script("cost_benchmark")
    base = tmp_path / "Hopper-v5" / "sure" / "seed1" / "run"
    base.mkdir(parents=True)
    (base / "config.json").write_text(json.dumps({"dataset": "../../d.npz"}))
    (tmp_path / "Hopper-v5" / "sure-reselect" / "seed1" / "run").mkdir(parents=True)
    plan = SimpleNamespace(methods={"sure-reselect": SimpleNamespace(needs={"m": "sure"}),
                                    "alone": SimpleNamespace(needs={})})
    cell = Cell("Hopper-v5", "sure-reselect", 1, tmp_path / "Hopper-v5" / "sure-reselect" / "seed1")
    assert mod.run_config(plan, cell) == ({"dataset": "../../d.npz"}, base)
    with pytest.raises(SystemExit, match="alone/seed1: no run configuration"):
        mod.run_config(plan, Cell("Hopper-v5", "alone", 1, tmp_path / "Hopper-v5" / "alone" / "seed1"))


def test_mix_table_sets_the_kernel_against_the_floor(benchmark_script):
    """dsp_mix sums the layers' kinds and puts the rest of the emulated count around them; the table line reads
    the floor's split, each kind, the total over the floor and the multiplies saved less the loads."""
    mix = benchmark_script("cost_mix")
    layers = [{"mix": {"multiplies": 300, "weight_loads": 60, "input_loads": 80, "activations": 100, "stores": 50,
                       "other": 5}},
              {"mix": {"multiplies": 40, "weight_loads": 10, "input_loads": 8, "activations": 0, "stores": 3,
                       "other": 1}}]
    m = mix.dsp_mix({"int": {"dsp_layers": layers}}, 700)
    assert m == {"multiplies": 340, "weight_loads": 70, "input_loads": 88, "activations": 100, "stores": 53,
                 "other": 6, "around": 43}
    assert mix.dsp_mix({"int": {"dsp_layers": [{"instructions": 9}]}}, 700) is None
    lines = mix.mix_table([{"cell": "T/bpd/seed0", "nonzero_weights": 600, "floor": 760, "dsp_mix": m,
                            "cortex-m4f": {"integer": {"instructions": 700}}},
                           {"cell": "T/bpd/seed1", "nonzero_weights": 600, "floor": 760}])
    assert lines[-1] == "| T/bpd/seed0 | 600 + 160 | 340 | 70 | 88 | 100 | 53 | 6 | 43 | 700 (0.92x) | +102 |"
    assert sum(m.values()) == 700  # the kinds and what is around the layers make up the emulated count
    assert mix.mix_table([{"cell": "x", "floor": 1}]) == []


def test_a_row_whose_cell_was_trained_again_is_known(cost, tmp_path, monkeypatch):
    """replaced: the rows whose cell's committed summary names another model than the row measured (the cell trained
    again since); a row of the same model, or of a cell with no committed summary, is not one."""
    import json
    from types import SimpleNamespace

    import bpd_app.experiment as experiment

    for cell, h in (("T/m/seed0", "aaa"), ("T/m/seed1", "new")):
        p = tmp_path / "cells" / f"{cell}.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({"export": {"model_hash": h}}))
    root = tmp_path / "root"  # the run root: a cell measured there before `experiment table` committed it
    (root / "T/m/seed3").mkdir(parents=True)
    (root / "T/m/seed3" / "result.json").write_text(json.dumps({"export": {"model_hash": "fresh"}}))
    p = tmp_path / "cells" / "T/m/seed3.json"
    p.write_text(json.dumps({"export": {"model_hash": "stale"}}))
    monkeypatch.setattr(experiment, "load_plan", lambda path: SimpleNamespace(results_dir=tmp_path, runs=root))
    res = {"plan": "benchmarks/plans/quick.yaml",
           "rows": [{"cell": "T/m/seed0", "model_hash": "aaa"}, {"cell": "T/m/seed1", "model_hash": "old"},
                    {"cell": "T/m/seed2", "model_hash": "zzz"}, {"cell": "T/m/seed3", "model_hash": "fresh"}]}
    assert cost.replaced(res) == {"T/m/seed1"}


def test_rows_are_not_checked_where_the_plan_is_gone(cost, capsys):
    assert cost.replaced({"plan": "benchmarks/plans/no-such-plan.yaml", "rows": [{"cell": "c"}]}) == set()
    assert "rows not checked against the plan's cells" in capsys.readouterr().err
