"""benchmarks/delivered.py's choice: the cheapest that keeps the return, else the highest return; uncosted never."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("delivered", Path(__file__).parents[1] / "benchmarks" / "delivered.py")
assert _spec and _spec.loader
delivered = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(delivered)


def cand(name, cycles, ret, keeps):
    return {"cell": name, "cycles": cycles, "select_return": ret, "keeps": keeps}


def offline(monkeypatch, plan, sums):
    """collect() on a hand-built plan and cell summaries: no run root, no cost files, this machine of kind p, the
    teacher's selection return 100.0 with no early end."""
    import bpd_app.experiment

    monkeypatch.setattr(bpd_app.experiment, "load_plan", lambda p: plan)
    monkeypatch.setattr(delivered, "_summaries", lambda p: sums)
    monkeypatch.setattr(delivered, "_cost_rows", lambda: {})
    monkeypatch.setattr(delivered, "_equal_cost_records", lambda: {})
    monkeypatch.setattr(delivered, "machine", lambda: {"processor": "p", "torch_cpu_capability": "c"})
    monkeypatch.setattr(delivered, "teacher_select", lambda *a: (100.0, 0))


def test_the_cheapest_that_keeps_the_return_is_delivered():
    cs = [cand("a", 100.0, 99.0, True), cand("b", 50.0, 99.5, True), cand("c", 10.0, 80.0, False)]
    assert delivered.choose(cs, 0.99)["cell"] == "b"


def test_equal_cost_goes_to_the_higher_return():
    cs = [cand("a", 50.0, 99.0, True), cand("b", 50.0, 99.5, True)]
    assert delivered.choose(cs, 0.99)["cell"] == "b"


def test_none_keeping_it_hands_over_the_highest_return_and_uncosted_cells_are_never_chosen():
    cs = [cand("a", 100.0, 90.0, False), cand("b", 50.0, 95.0, False), cand("c", None, 200.0, True)]
    assert delivered.choose(cs, 0.99)["cell"] == "b"
    assert delivered.choose([cand("c", None, 200.0, True)], 0.99) is None


def test_cycles_come_from_the_cells_export_else_from_a_current_cost_row():
    s = {"bench": {"integer": {"cycles": 1234.0}}}
    assert delivered.integer_cycles("E/m/seed0", s, {}) == (1234.0, "cell export")
    rows = {"E/m/seed0": {"integer_form": "dsp", "model_hash": "h1", "cortex-m4f": {"integer": {"cycles": 99.0}}}}
    cell = {"bench": {}, "export": {"model_hash": "h1"}}
    assert delivered.integer_cycles("E/m/seed0", cell, rows) == (99.0, "cost.json")
    other = {"bench": {}, "export": {"model_hash": "h2"}}  # the cell trained again: another student
    assert delivered.integer_cycles("E/m/seed0", other, rows) == (None, "not measured")
    old = {"E/m/seed0": {"model_hash": "h1", "cortex-m4f": {"integer": {"cycles": 99.0}}}}  # an earlier form
    assert delivered.integer_cycles("E/m/seed0", cell, old) == (None, "not measured")


def test_a_cell_from_another_kind_of_machine_is_never_chosen():
    cs = [cand("a", 10.0, 99.9, True) | {"comparable": False}, cand("b", 50.0, 99.5, True)]
    assert delivered.choose(cs, 0.99)["cell"] == "b"


def test_a_reselection_stands_for_the_run_it_chose_from():
    """The delivery plan's reselect row needs its candidate row's cell: where both finished, the candidate row's cell
    is marked superseded and not chosen, though cheaper and keeping on its 30 selection episodes; the other rows'
    cells are not touched."""
    from bpd_app.experiment import load_plan

    plan = load_plan(str(Path(__file__).parents[1] / "benchmarks" / "plans" / "delivery.yaml"))
    base = "bpd-units-finetune-pairs-warmup-c50-visits-sure"
    cs = [cand(base, 100.0, 99.5, True), cand(f"{base}-reselect", 110.0, 99.2, True),
          cand(f"{base}-noise0.3", 120.0, 99.4, True), cand("bpd", 200.0, 99.9, True)]
    for c in cs:
        c["method"] = c["cell"]
    assert delivered.choose(cs, 0.99)["cell"] == base
    delivered.supersede(plan, cs)
    assert [c.get("superseded_by") for c in cs] == [f"{base}-reselect", None, None, None]
    assert delivered.choose(cs, 0.99)["cell"] == f"{base}-reselect"


def test_the_teachers_returns_are_kept_per_kind_of_machine():
    amd = {"processor": "AMD EPYC", "torch_cpu_capability": "AVX2"}
    intel = {"processor": "Intel Xeon", "torch_cpu_capability": "AVX2"}
    # an earlier file written on AMD: its entries without a kind are AMD's; one entry names Intel
    prev = {"machine": amd, "teacher_select": [
        {"env": "E", "seed": 0, "episodes": 10, "return": 100.0, "early_ends": 0},
        {"env": "E", "seed": 0, "episodes": 10, "return": 90.0, "early_ends": 1, "machine": intel}]}
    cache = delivered.teacher_cache(prev)
    assert cache[(delivered._kind(amd), "E", 0, 10)] == (100.0, 0)
    assert cache[(delivered._kind(intel), "E", 0, 10)] == (90.0, 1)
    assert (delivered._kind(intel), "E", 1, 10) not in cache  # another seed: to be run on its own kind
    assert delivered._kind({"processor": "AMD EPYC", "torch_cpu_capability": "AVX512"}) != delivered._kind(amd)


def test_another_plans_student_beats_the_delivered_one_only_at_fewer_cycles_and_at_least_its_return():
    d = {"cycles": 100.0, "return_vs_teacher": 1.00}
    others = [{"method": "cheaper-worse", "cycles": 90.0, "return_vs_teacher": 0.99},
              {"method": "dearer-better", "cycles": 110.0, "return_vs_teacher": 1.02},
              {"method": "cheaper-level", "cycles": 95.0, "return_vs_teacher": 1.00},
              {"method": "unmeasured", "cycles": None, "return_vs_teacher": 1.05}]
    assert [o["method"] for o in delivered.beaten_by(d, others)] == ["cheaper-level"]


def test_issue_34s_bar_needs_half_the_cycles_the_return_and_no_early_end():
    def row(ratio, share, ends):
        d = {"cell": "E/x/seed0", "return_vs_teacher": share, "early_ends": ends}
        return {"candidates": [d], "delivered": "E/x/seed0", "cycles_vs_reference": ratio}

    assert delivered.meets_bar(row(0.49, 0.995, 0), 0.99) is True
    assert delivered.meets_bar(row(0.5, 0.99, 0), 0.99) is True  # both limits inclusive
    assert delivered.meets_bar(row(0.51, 1.2, 0), 0.99) is False
    assert delivered.meets_bar(row(0.3, 0.989, 0), 0.99) is False
    assert delivered.meets_bar(row(0.3, 1.0, 1), 0.99) is False  # one early end of 30 misses it
    assert delivered.meets_bar(row(None, 1.0, 0), 0.99) is None  # no reference cell measured
    # --also-against: the same student judged against another run's reference cell of the seed
    both = row(0.48, 1.0, 0) | {"cycles_vs_also": 1.06}
    assert delivered.meets_bar(both, 0.99) is True
    assert delivered.meets_bar(both, 0.99, "cycles_vs_also") is False
    assert delivered.meets_bar(row(0.48, 1.0, 0), 0.99, "cycles_vs_also") is None  # that plan has no such cell


def test_confirm_walks_the_kept_candidates_cheapest_first_until_one_holds(monkeypatch, tmp_path):
    """--confirm: each kept candidate, cheapest first, runs on the selection seeds after the run's beside the
    teacher; one that falls where the teacher finishes, or drops below the share, is passed over; the next that
    holds is delivered; an uncosted or unkept one is never run."""
    from types import SimpleNamespace

    import bpd_app.evaluate
    import training.selection
    import training.teacher
    from training.envs import Episodes

    teacher = Episodes([100.0, 100.0, 20.0], [1000, 1000, 200], [False, False, True], 0)
    outcomes = {"a": Episodes([100.0, 30.0, 100.0], [1000, 300, 1000], [False, True, False], 0),  # falls
                "b": Episodes([100.0, 100.0, 20.0], [1000, 1000, 200], [False, False, True], 0)}  # only where
    seen = []  # the teacher does too

    def rollouts(env, act, n, seed):
        seen.append((act, n, seed))
        return teacher if act == "teacher" else outcomes[act]

    monkeypatch.setattr(training.selection, "rollouts", rollouts)  # the one confirm, shared with bpd compress
    monkeypatch.setattr(training.teacher, "load_teacher", lambda p: SimpleNamespace(act="teacher"))
    monkeypatch.setattr(bpd_app.evaluate, "load_any", lambda p: SimpleNamespace(act=p.parts[-4]))
    for m in "abcd":
        (tmp_path / "E" / m / "seed1" / "run").mkdir(parents=True)
        (tmp_path / "E" / m / "seed1" / "run" / "student.pt").write_bytes(b"")
    plan = SimpleNamespace(runs=tmp_path, teachers={"E": "t.npz"},
                           methods={m: SimpleNamespace(method="bpd") for m in "abcd"})
    cs = [cand("E/a/seed1", 10.0, 99.0, True), cand("E/b/seed1", 20.0, 99.0, True),
          cand("E/c/seed1", 5.0, 99.0, False), cand("E/d/seed1", None, 99.0, True)]
    for c in cs:
        c["method"] = c["cell"].split("/")[1]
    d, held = delivered.confirmed(plan, "E", 1, cs, 0.99, 10, 3)
    assert held and d["cell"] == "E/b/seed1" and d["confirm"]["holds"]
    assert d["confirm"]["early_ends_where_teacher_finished"] == 0
    assert cs[0]["confirm"]["early_ends_where_teacher_finished"] == 1 and not cs[0]["confirm"]["holds"]
    assert "confirm" not in cs[2] and "confirm" not in cs[3]
    assert [s[0] for s in seen] == ["teacher", "a", "b"] and {s[1:] for s in seen} == {(3, 200_000 + 1000 + 10)}
    # with a low share (compress's default 0.5), 'a' running its second episode on at 30 of the teacher's 100 falls
    # there even without ending it early, and 'b' holds
    outcomes["a"] = Episodes([130.0, 30.0, 100.0], [1000, 1000, 1000], [False, False, False], 0)
    for c in cs:
        c.pop("confirm", None)
    assert delivered.confirmed(plan, "E", 1, cs, 0.99, 10, 3)[0]["cell"] == "E/a/seed1"
    d, _ = delivered.confirmed(plan, "E", 1, cs, 0.99, 10, 3, low_share=0.5)
    assert d["cell"] == "E/b/seed1" and cs[0]["confirm"]["low_episodes"] == 1 and not cs[0]["confirm"]["holds"]
    # none holds: as `bpd compress` hands over, the judged one with the fewest falls there (b: 98 % of the teacher,
    # no fall, against a's fall), then the highest return there, unconfirmed; nothing judged: nothing
    outcomes["a"] = Episodes([100.0, 30.0, 100.0], [1000, 300, 1000], [False, True, False], 0)
    outcomes["b"] = Episodes([98.0, 98.0, 20.0], [1000, 1000, 200], [False, False, True], 0)
    for c in cs:
        c.pop("confirm", None)
    d, held = delivered.confirmed(plan, "E", 1, cs, 0.99, 10, 3)
    assert d["cell"] == "E/b/seed1" and held is False and not d["confirm"]["holds"]
    outcomes["a"] = Episodes([98.0, 98.5, 20.0], [1000, 1000, 200], [False, False, True], 0)  # no fall either
    outcomes["b"] = Episodes([96.0, 96.0, 20.0], [1000, 1000, 200], [False, False, True], 0)
    for c in cs:
        c.pop("confirm", None)
    d, held = delivered.confirmed(plan, "E", 1, cs, 0.99, 10, 3)
    assert d["cell"] == "E/a/seed1" and held is False  # 98.4 % against b's 96.4 %, neither falling
    assert delivered.confirmed(plan, "E", 1, [cs[2], cs[3]], 0.99, 10, 3) == (None, None)


def test_confirm_judges_a_student_whose_file_is_gone_by_its_earlier_record_in_the_same_order(monkeypatch, tmp_path):
    """A run root lost with its machine: a kept candidate without its student file is judged by an earlier
    delivered.json's record of the same student (file digest) on the same episodes from the same first seed, in its
    place in the cheapest-first order (cheaper students with files run first), its verdict taken again at this run's
    keep-return from the record's figures; a record of another student, other seeds, another count or another low
    share is not used, and every earlier record is carried forward."""
    from types import SimpleNamespace

    import bpd_app.evaluate
    import training.selection
    import training.teacher
    from training.envs import Episodes

    teacher = Episodes([100.0, 100.0], [1000, 1000], [False, False], 0)
    outcomes = {"a": Episodes([100.0, 30.0], [1000, 300], [False, True], 0),  # falls
                "c": Episodes([100.0, 100.0], [1000, 1000], [False, False], 0)}
    seen = []

    def rollouts(env, act, n, seed):
        seen.append(act)
        return teacher if act == "teacher" else outcomes[act]

    monkeypatch.setattr(training.selection, "rollouts", rollouts)
    monkeypatch.setattr(training.teacher, "load_teacher", lambda p: SimpleNamespace(act="teacher"))
    monkeypatch.setattr(bpd_app.evaluate, "load_any", lambda p: SimpleNamespace(act=p.parts[-4]))
    for m in "ac":  # b's file is gone
        (tmp_path / "E" / m / "seed1" / "run").mkdir(parents=True)
        (tmp_path / "E" / m / "seed1" / "run" / "student.pt").write_bytes(b"")
    plan = SimpleNamespace(runs=tmp_path, teachers={"E": "t.npz"},
                           methods={m: SimpleNamespace(method="bpd") for m in "abc"})
    first = 200_000 + 1000 + 10

    def cands(cycles=(10.0, 20.0, 30.0)):
        cs = [cand(f"E/{m}/seed1", x, 99.0, True) | {"method": m, "product_sha256": m * 4}
              for m, x in zip("abc", cycles)]
        return cs

    def earlier(ret=99.5, first_seed=first, episodes=2, sha="bbbb", low=None):
        rec = {"episodes": episodes, "first_seed": first_seed, "return": ret, "teacher_return": 100.0,
               "early_ends_where_teacher_finished": 0, "holds": True} | ({"low_episodes": 0, "low_share": low}
                                                                          if low else {})
        prev = {"rows": [{"candidates": [{"cell": "E/b/seed1", "product_sha256": sha, "confirm": rec}]}]}
        return delivered.earlier_records(prev), prev

    found, prev = earlier()
    cs = cands()
    d, _ = delivered.confirmed(plan, "E", 1, cs, 0.99, 10, 2, earlier=found)
    assert d["cell"] == "E/b/seed1" and d["confirm"]["reused"] and d["confirm"]["return"] == 99.5
    assert not cs[0]["confirm"]["holds"] and "confirm" not in cs[2] and seen == ["teacher", "a"]
    assert "reused" not in prev["rows"][0]["candidates"][0]["confirm"]  # the earlier file's record left as it was
    seen.clear()
    cs = cands(cycles=(30.0, 20.0, 40.0))  # b the cheapest: judged by its record, nothing run
    assert delivered.confirmed(plan, "E", 1, cs, 0.99, 10, 2, earlier=found)[0]["cell"] == "E/b/seed1" and seen == []
    # held at 0.99 earlier, 98.5 % fails at 0.99 now: judged again from its figures; c runs after it, the teacher
    # beside it again
    cs = cands()
    assert delivered.confirmed(plan, "E", 1, cs, 0.99, 10, 2, earlier=earlier(ret=98.5)[0])[0]["cell"] == "E/c/seed1"
    assert seen == ["teacher", "a", "teacher", "c"] and not cs[1]["confirm"]["holds"]
    d, _ = delivered.confirmed(plan, "E", 1, cands(), 0.98, 10, 2, earlier=earlier(ret=98.5)[0])
    assert d["cell"] == "E/b/seed1"
    for stale in (earlier(first_seed=first + 5)[0], earlier(episodes=3)[0], earlier(sha="other")[0],
                  earlier(low=0.5)[0], []):
        cs = cands()
        assert delivered.confirmed(plan, "E", 1, cs, 0.99, 10, 2, earlier=stale)[0]["cell"] == "E/c/seed1"
        assert cs[1]["confirm"] == {"error": "no student file in the run root"}
    # carried forward: a file written from one that holds a record keeps it, once, whatever its own candidates hold
    again = delivered.earlier_records({"rows": [], "confirm_earlier": found + found})
    assert again == found and delivered.earlier_records({"rows": [], "confirm_earlier": again}) == found


def test_falls_on_the_selection_seeds_are_the_runs_record_else_its_early_ends():
    """A run with the falls check recorded its falls where the teacher finished: taken as they are (2 early ends,
    1 where the teacher finished). A run before it recorded early ends only: counted as falls, exact where the
    teacher finished every selection episode (or the run none), an upper bound otherwise."""
    assert delivered.selection_falls({"falls": 1, "early_terminations": 2}, 1) == (1, True)
    assert delivered.selection_falls({"early_terminations": 2}, 0) == (2, True)
    assert delivered.selection_falls({"early_terminations": 2}, 1) == (2, False)  # an upper bound
    assert delivered.selection_falls({"early_terminations": 0}, 3) == (0, True)
    assert delivered.selection_falls({}, 0) == (None, False)


def test_a_cells_selection_episodes_come_from_its_record_its_args_its_method_or_distills_default():
    assert delivered.selection_episodes({"train": {"selection_seeds": [200_000, 200_029]}}, "bpd") == 30
    assert delivered.selection_episodes({"args": {"select_episodes": 20}}, "bpd") == 20
    assert delivered.selection_episodes({}, "bpd-units-finetune-pairs-warmup-c50-long-sure") == 30
    assert delivered.selection_episodes({}, "bpd") == delivered.SELECT_EPISODES == 10


def test_a_candidate_measured_with_another_form_of_the_kernel_than_the_reference_is_set_aside():
    """Same kernel on both sides: a cell whose bench recorded another integer-kernel form than the bpd cell's has
    its cycles set aside (kept apart, listed, never chosen); one of the reference's form keeps them. The form comes
    from the cell's summary, None for benches before it was kept."""
    ref = cand("bpd", 200.0, 99.9, True) | {"method": "bpd", "kernel_form": "new"}
    same = cand("a", 90.0, 99.5, True) | {"method": "a", "kernel_form": "new"}
    other = cand("b", 80.0, 99.6, True) | {"method": "b", "kernel_form": "old"}
    cs = [ref, same, other]
    assert delivered.choose(cs, 0.99)["cell"] == "b"
    delivered.same_kernel(cs, ref)
    assert other["cycles"] is None and other["cycles_other_form"] == 80.0 and same["cycles"] == 90.0
    assert delivered.choose(cs, 0.99)["cell"] == "a"
    assert "another form" in delivered._cycles_cell(other)
    assert delivered.kernel_form({"bench": {"integer": {"cycles": 1.0, "form": "new"}}}) == "new"
    assert delivered.kernel_form({"bench": {"integer": {"cycles": 1.0}}}) is None


def test_a_cells_summary_keeps_the_integer_kernels_form_its_bench_recorded():
    from bpd_app.experiment.summary import _integer_figures

    c = {"instructions": 900, "cycles": 1600.0, "flash_bytes": 9000}
    assert _integer_figures({"export_kernels": {"candidates": {"integer": c}, "integer_form": "f1"}}) == c | {
        "form": "f1"}
    assert _integer_figures({"export_kernels": {"candidates": {"integer": c}}}) == c


def test_another_plans_student_of_another_kernel_form_does_not_beat_the_delivered_one():
    """An other plan's student measured with another form of the integer kernel is set aside against the delivered
    student (its cycles kept apart), so it beats nothing; one of the same form does where it is cheaper."""
    d = {"cycles": 1000.0, "return_vs_teacher": 1.0, "kernel_form": "new"}
    old = {"method": "o", "cycles": 900.0, "return_vs_teacher": 1.01, "kernel_form": None}
    new = {"method": "n", "cycles": 950.0, "return_vs_teacher": 1.01, "kernel_form": "new"}
    delivered.same_kernel([old, new], d)
    assert old["cycles"] is None and old["cycles_other_form"] == 900.0
    assert [o["method"] for o in delivered.beaten_by(d, [old, new])] == ["n"]


def test_bpd_rows_are_candidates_and_another_methods_rows_are_set_against_them():
    from bpd_app.experiment.plan import is_bpd

    assert all(is_bpd(m) for m in ("bpd", "bpd-units-finetune-pairs-warmup-c50-visits-sure"))
    assert not any(is_bpd(m) for m in ("magnitude-prune", "l1-threshold", "dense-small", "online-sac-small", "bpdx"))


def test_another_methods_row_of_the_plan_is_set_against_the_delivered_student_never_delivered(monkeypatch):
    """A plan's magnitude-pruning row, cheaper and keeping the return, is not delivered: the cheapest BPD row that
    keeps it is; the magnitude row is listed against it, beats it (at least its return, fewer cycles), and its report
    line names it another method; one measured with another kernel form is set aside, not set against it."""
    from types import SimpleNamespace

    form = "f1"

    def summ(cycles, ret, form=form, select=100.0):
        return {"train": {"selection": {"select_return": select, "falls": 0}, "selection_seeds": [200_000, 200_009]},
                "machine": {"processor": "p", "torch_cpu_capability": "c"}, "params_nonzero": 10,
                "eval": {"return_mean": ret, "return_std": 1.0, "return_min": ret, "episodes": 30},
                "return_vs_teacher": ret / 100.0, "early_terminations_where_teacher_finished": 0,
                "bench": {"integer": {"cycles": cycles, "form": form}}}

    sums = {"E/bpd/seed0": summ(1000.0, 100.0), "E/bpd-cut/seed0": summ(500.0, 99.5),
            "E/magnitude-prune-c50/seed0": summ(400.0, 99.6), "E/magnitude-old/seed0": summ(300.0, 99.9, "f0")}
    methods = {"bpd": "bpd", "bpd-cut": "bpd-units-finetune-pairs-warmup-c50-visits-sure",
               "magnitude-prune-c50": "magnitude-prune", "magnitude-old": "magnitude-prune"}
    plan = SimpleNamespace(name="p", envs=["E"], seeds=[0], teachers={"E": "t.npz"},
                           methods={k: SimpleNamespace(method=v) for k, v in methods.items()})
    offline(monkeypatch, plan, sums)
    monkeypatch.setattr(delivered, "ROOT", Path("/"))
    res = delivered.collect("/plan.yaml", 0.99, None)
    (row,) = res["rows"]
    assert row["delivered"] == "E/bpd-cut/seed0"
    assert [c["method"] for c in row["candidates"]] == ["bpd", "bpd-cut"]
    others = {o["method"]: o for o in row["others"]}
    assert set(others) == {"magnitude-prune-c50", "magnitude-old"}
    assert others["magnitude-old"]["cycles"] is None and others["magnitude-old"]["cycles_other_form"] == 300.0
    assert row["beaten_by"] == ["magnitude-prune-c50"] and row["meets_bar"] is True
    md = delivered.markdown(res | {"out": "x"})
    assert "| 0 | magnitude-prune-c50 (another method) |" in md and "this plan's other rows" in md
    # --any-method: every row is a candidate, as compress chooses; the magnitude row at 400 cycles keeps the return
    # and is delivered; the one of another kernel form has its cycles set aside and is not chosen
    res = delivered.collect("/plan.yaml", 0.99, None, any_method=True)
    (row,) = res["rows"]
    assert row["delivered"] == "E/magnitude-prune-c50/seed0" and row["others"] == [] and row["beaten_by"] == []
    assert {c["method"] for c in row["candidates"]} == set(methods)
    assert row["cycles_vs_reference"] == 0.4 and row["meets_bar"] is True
    md = delivered.markdown(res | {"out": "x"})
    assert "--any-method" in md and "Every row of the plan is a candidate" in md


def test_teacher_from_judges_cells_of_another_kind_by_that_files_teacher_and_names_it(monkeypatch, tmp_path):
    """A cut cell trained on kind q, where this machine is kind p: not comparable (never chosen) until --teacher-from
    gives the teacher's selection return on q (50.0: the cut's 100.0 keeps it) from a file of the same plan; a file
    of another plan is refused in one line."""
    from types import SimpleNamespace

    from bpd.errors import BpdError

    def summ(cycles, proc):
        return {"train": {"selection": {"select_return": 100.0, "falls": 0}}, "params_nonzero": 10,
                "machine": {"processor": proc, "torch_cpu_capability": "c"},
                "eval": {"return_mean": 100.0, "return_std": 1.0, "return_min": 99.0, "episodes": 30},
                "return_vs_teacher": 1.0, "early_terminations_where_teacher_finished": 0,
                "bench": {"integer": {"cycles": cycles, "form": "f1"}}}

    sums = {"E/bpd/seed0": summ(1000.0, "p"), "E/bpd-cut/seed0": summ(400.0, "q")}
    plan = SimpleNamespace(name="p", envs=["E"], seeds=[0], teachers={"E": "t.npz"}, methods={
        "bpd": SimpleNamespace(method="bpd"),
        "bpd-cut": SimpleNamespace(method="bpd-units-finetune-pairs-warmup-c50-visits-sure")})
    offline(monkeypatch, plan, sums)
    monkeypatch.setattr(delivered, "ROOT", tmp_path)
    (tmp_path / "plan.yaml").write_text("")
    (row,) = delivered.collect(str(tmp_path / "plan.yaml"), 0.99, None)["rows"]
    assert row["delivered"] == "E/bpd/seed0"  # the q cell is listed, not comparable
    q = {"processor": "q", "torch_cpu_capability": "c"}
    src = tmp_path / "earlier.json"
    src.write_text(json.dumps({"plan": "plan.yaml", "machine": q, "teacher_select": [
        {"env": "E", "seed": 0, "episodes": n, "return": 50.0, "early_ends": 0, "machine": q} for n in (10, 30)]}))
    res = delivered.collect(str(tmp_path / "plan.yaml"), 0.99, None, teacher_from=str(src))
    (row,) = res["rows"]
    assert row["delivered"] == "E/bpd-cut/seed0" and row["cycles_vs_reference"] == 0.4
    assert res["teacher_from"] == "earlier.json" and "q (from earlier.json)" in delivered.markdown(res)
    src.write_text(json.dumps({"plan": "other.yaml", "teacher_select": []}))
    with pytest.raises(BpdError, match="written for other.yaml"):
        delivered.collect(str(tmp_path / "plan.yaml"), 0.99, None, teacher_from=str(src))
    with pytest.raises(BpdError, match="cannot be read as a delivered.json"):
        delivered.collect(str(tmp_path / "plan.yaml"), 0.99, None, teacher_from=str(tmp_path / "missing.json"))
