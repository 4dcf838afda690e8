"""benchmarks/dsp_bound.py: the SMLADs a layer's mask costs under a pairing of its columns (training/pairs.py
multiply_slots), the best pairing, and every row's own pairs, on hand-built masks counted by hand."""

import numpy as np


def _mask(rows: list[str]) -> np.ndarray:
    return np.array([[ch == "1" for ch in r] for r in rows])


# columns a b c d: a and b share three rows, a-c and b-d two each, c and d none. Greedy pairing by shared rows takes
# (a, b) first and is left with (c, d); the best pairing is (a, c) and (b, d)
MASK = _mask(["1100",  # a b
              "1100",
              "1100",
              "1010",  # a c
              "1010",
              "0101",  # b d
              "0101"])


def test_slots_count_one_smlad_a_row_and_pair_with_a_weight():
    from training.pairs import multiply_slots as slots

    # (a, b) and (c, d): rows 0-2 one pair each; rows 3-6 two pairs each (a and c, b and d fall in different pairs)
    assert slots(MASK, [(0, 1), (2, 3)]) == 3 + 4 * 2 == slots(MASK)  # the greedy pairing's
    # (a, c) and (b, d): rows 0-2 two pairs each; rows 3-6 one each
    assert slots(MASK, [(0, 2), (1, 3)]) == 3 * 2 + 4
    assert slots(MASK, [(0, None), (1, None), (2, None), (3, None)]) == int(MASK.sum())


def test_the_best_pairing_beats_the_greedy_one_where_greed_takes_the_largest_overlap_first(benchmark_script):
    from training.pairs import multiply_slots, pair_columns

    b = benchmark_script("dsp_bound")
    assert sorted(pair_columns(MASK.astype(float))) == [(0, 1), (2, 3)]
    best = b.best_pairs(MASK)
    assert sorted(tuple(sorted(p)) for p in best) == [(0, 2), (1, 3)]
    assert multiply_slots(MASK, best) == 10 < multiply_slots(MASK) == 11
    # every row's own pairs: ceil(2 / 2) = 1 a row, below any single pairing
    assert int(np.ceil(MASK.sum(1) / 2).sum()) == 7


def test_an_odd_column_and_a_dead_one(benchmark_script):
    from training.pairs import multiply_slots

    b = benchmark_script("dsp_bound")
    m = _mask(["1110", "1110"])  # column d carries no weight: left out; a, b, c: one pair and one alone
    best = b.best_pairs(m)
    assert sum(p[1] is None for p in best) == 1 and {c for p in best for c in p if c is not None} == {0, 1, 2}
    assert multiply_slots(m, best) == 4


def test_two_layouts_give_each_group_of_rows_the_pairing_that_suits_it(benchmark_script):
    """Three rows use a and b, three use a and c: one pairing puts a with b or with c, so one group pays two SMLADs a
    row (3 + 6 = 9); two copies of the inputs, (a, b) for the first group and (a, c) for the second, cost one a row."""
    from training.pairs import multiply_slots

    b = benchmark_script("dsp_bound")
    m = _mask(["1100", "1100", "1100", "1010", "1010", "1010"])
    assert multiply_slots(m) == 9
    assert b.two_layouts(m) == 6
    assert b.two_layouts(MASK) <= multiply_slots(MASK, b.best_pairs(MASK)) == 10  # here no worse than one layout
    assert b.two_layouts(_mask(["0000"])) == 0  # no weight, no multiply


def test_half_used_words_joined_in_registers_pay_where_two_rows_share_the_join(benchmark_script):
    """Pairs (a, b) and (c, d). Rows 0-2 use a and c alone (one half of each word): one PKHBT joining a and c lets
    each take one SMLAD for two, 3 multiplies saved for 1 join. Row 3 uses b and d alone: no other row shares that
    join, so it is not made. In groups of two rows ([0, 1], [2, 3]) only the first group's two rows share a join."""
    b = benchmark_script("dsp_bound")
    m = _mask(["1010", "1010", "1010", "0101"])
    pairs = [(0, 1), (2, 3)]
    assert b.derived_pairs(m, pairs, [[0, 1, 2, 3]]) == (3, 1)
    assert b.derived_pairs(m, pairs, [[0, 1], [2, 3]]) == (2, 1)
    assert b.derived_pairs(_mask(["1100", "1100"]), pairs, [[0, 1]]) == (0, 0)  # full words: nothing to join
    # the best joins save what the greedy nets here: 3 - 1, and 2 - 1 in the first group of two
    assert b.joins_optimum(m, pairs, [[0, 1, 2, 3]]) == 2
    assert b.joins_optimum(m, pairs, [[0, 1], [2, 3]]) == 1
    assert b.joins_optimum(_mask(["1100", "1100"]), pairs, [[0, 1]]) == 0


def test_an_unpaired_column_is_a_half_and_a_row_joins_each_half_once(benchmark_script):
    """Pairs (a, b), (c, d) and e alone. Two rows use a, c and e: three halves each (e's word has no partner). The
    three joins tie at two rows; the first, (a, c), is made (2 saved, 1 PKHBT); e is left alone in each row, so no
    second join: 1 net, the best any choice makes."""
    b = benchmark_script("dsp_bound")
    m, pairs = _mask(["10101", "10101"]), [(0, 1), (2, 3), (4, None)]
    assert b.derived_pairs(m, pairs, [[0, 1]]) == (2, 1)
    assert b.joins_optimum(m, pairs, [[0, 1]]) == 1


def test_the_best_joins_beat_the_greedy_where_the_first_join_blocks_two_larger_ones(benchmark_script):
    """Columns a-d, each alone in its word. Row 0 uses a, b, c, d; rows 1-2 a, b; rows 3-4 a, c; rows 5-6 b, d. Joins
    (a, b), (a, c) and (b, d) each serve three rows; the greedy takes (a, b) first (rows 0-2, 2 net), leaving (a, c)
    and (b, d) two rows each (1 net each): 7 multiplies saved for 3 PKHBTs, 4 net. Best: row 0 in (a, c) and (b, d)
    (2 net each) and (a, b) for rows 1-2 (1 net): 5."""
    b = benchmark_script("dsp_bound")
    m = _mask(["1111", "1100", "1100", "1010", "1010", "0101", "0101"])
    pairs = [(j, None) for j in range(4)]
    group = [list(range(7))]
    assert b.derived_pairs(m, pairs, group) == (7, 3)
    assert b.joins_optimum(m, pairs, group) == 5


def test_full_and_half_words_under_a_pairing_and_every_rows_own(benchmark_script):
    from training.pairs import multiply_slots

    b = benchmark_script("dsp_bound")
    # (a, b), (c, d): rows 0-2 fill (a, b); rows 3-6 use one half of each word, two halves a row
    assert b.full_half(MASK, [(0, 1), (2, 3)]) == (3, 8)
    assert sum(b.full_half(MASK, [(0, 1), (2, 3)])) == multiply_slots(MASK, [(0, 1), (2, 3)])
    # (a, c), (b, d): rows 3-6 fill one word, rows 0-2 use one half of each
    assert b.full_half(MASK, [(0, 2), (1, 3)]) == (4, 6)
    # every row's own pairs: two weights a row, one full word each; an odd row leaves a half
    assert b.full_half(MASK, None) == (7, 0)
    assert b.full_half(_mask(["1110", "1000"]), None) == (1, 2)
    assert b.full_half(_mask(["1110"]), [(0, None), (1, 2)]) == (1, 1)


def test_least_loads_takes_the_best_split_of_the_registers(benchmark_script):
    """6 full and 2 half multiplies (7 table words), 2 rows, 2 input words, 4 registers: R, C, G = (1, 1, 2): 4 weight
    loads + 2 bias loads + 8 input loads (8 multiplies, one a load) = 14; (1, 2, 1): 7 + 2 + 4 = 13; (2, 1, 1):
    7 + 1 + 4 = 12, the least."""
    b = benchmark_script("dsp_bound")
    assert b.least_loads(6, 2, 2, 2, 4) == 12
    # one row with nine half-used words (every word carries a weight): R, C, G = (1, 5, 6): 1 weight load (4.5 words),
    # 1 bias load, 2 input loads (9 words, 5 at a time)
    assert b.least_loads(0, 9, 1, 9, 12) == 1 + 1 + 2


def test_least_loads_is_below_every_tiling_the_kernel_can_emit(benchmark_script):
    """On random small masks, for every (R, C, G) the kernel tries (export/dsp.py _best_layer), the loads its code
    emits for a layer (weight table and inputs, with r0's moves) are never fewer than least_loads for that pairing."""
    from export.dsp import POOL, SPARE, Act, layer_code, mix, words
    from training.pairs import pair_columns

    b = benchmark_script("dsp_bound")
    rng = np.random.default_rng(3)
    for _ in range(12):
        rows, cols = int(rng.integers(2, 9)), int(rng.integers(3, 12))
        nz = rng.random((rows, cols)) < rng.uniform(0.2, 0.9)
        nz[0, 0] = True
        wq = np.where(nz, rng.integers(1, 100, nz.shape), 0)
        pairs = pair_columns(nz)
        assert all((words(wq, [p]) != 0).any() for p in pairs)  # every word carries a weight
        full, half = b.full_half(nz, pairs)
        bound = b.least_loads(full, half, rows, len(pairs), len(POOL) + len(SPARE))
        act = Act("store", np.zeros(rows, int))
        for total in (len(POOL), len(POOL) + len(SPARE)):
            for r in range(1, len(POOL)):
                for c in range(1, total - r):
                    lines, _ = layer_code(wq, np.arange(rows), pairs, act, r, c, total - r - c)
                    m = mix(lines)
                    assert m["weight_loads"] + m["input_loads"] >= bound
                    assert m["multiplies"] == full + half


def test_fastest_kernel_counts_the_students_whose_integer_kernel_has_the_fewest_cycles(benchmark_script, tmp_path,
                                                                                        monkeypatch):
    """benchmarks/fastest_kernel.py reads each cell's export report: two students, the integer kernel fastest on one
    (the float kernel 2x its cycles), another integer form faster on the other; a cell without an export is skipped."""
    import json
    from types import SimpleNamespace

    import bpd_app.experiment as experiment

    fk = benchmark_script("fastest_kernel")
    cells = []
    for i, cand in enumerate([{"integer": 100, "integer-table": 120, "compact": 200},
                              {"integer": 100, "integer-interp": 90, "generated": 300}, None]):
        d = tmp_path / f"c{i}"
        if cand is not None:
            (d / "export").mkdir(parents=True)
            kernel = {"shipped": "integer", "candidates": {k: {"cost": {"cycles": v}} for k, v in cand.items()}}
            (d / "export" / "export_report.json").write_text(json.dumps({"kernel": kernel}))
        cells.append(SimpleNamespace(dir=d, key=f"E/m/seed{i}", env="E"))
    monkeypatch.setattr(experiment, "load_plan", lambda p: SimpleNamespace(cells=lambda: cells))
    plan = fk.ROOT / "benchmarks" / "plans" / "quick.yaml"
    rows = fk.gather([plan])
    assert [r["fastest"] for r in rows] == ["integer", "integer-interp"]
    assert rows[0]["best_float_cycles"] == 200 and rows[1]["best_other"] == "integer-interp"
    md = fk.table({"command": "x", "rows": rows})
    assert "fewest cycles on 1 of 2 students" in md and "the fastest float kernel 2.00-3.00x" in md
    assert "E/m/seed1: integer-interp" in md


def test_kept_rows_keep_an_earlier_runs_rows_for_cells_not_measured_again(tmp_path):
    """bpd.io.kept_rows: of OUT.json's rows, those no new row shares a key with, marked kept; none where OUT.json was
    written for another plan or row, or is absent."""
    import json

    from bpd.io import kept_rows

    out = tmp_path / "bound"
    assert kept_rows(out, [], ("cell",), {"label": "a"}) == []
    old = {"label": "a", "rows": [{"cell": "E/a/seed0", "x": 1}, {"cell": "E/a/seed1", "x": 2}]}
    out.with_suffix(".json").write_text(json.dumps(old))
    assert kept_rows(out, [{"cell": "E/a/seed1", "x": 3}], ("cell",), {"label": "a"}) == [
        {"cell": "E/a/seed0", "x": 1, "kept": True}]
    assert len(kept_rows(out, [{"cell": "E/a/seed1", "plan": "p"}], ("cell", "plan"), {})) == 0  # rows lack plan
    assert kept_rows(out, [], ("cell",), {}, lambda r: r["cell"] != "E/a/seed0") == [
        {"cell": "E/a/seed1", "x": 2, "kept": True}]  # a cell the plan no longer has: not kept


def test_kept_rows_say_why_nothing_is_kept_and_a_corrupt_file_is_one_line(tmp_path, capsys):
    import json

    import pytest

    from bpd.errors import BpdError
    from bpd.io import kept_rows

    out = tmp_path / "bound"
    out.with_suffix(".json").write_text(json.dumps({"label": "a", "form": "old", "rows": [{"cell": "c"}, 3]}))
    assert kept_rows(out, [], ("cell",), {"label": "a", "form": "new"}) == []
    assert "written for another form; none of its rows kept" in capsys.readouterr().err
    assert kept_rows(out, [], ("cell",), {"label": "a"}) == [{"cell": "c", "kept": True}]  # a row not a dict: skipped
    out.with_suffix(".json").write_text("{")
    with pytest.raises(BpdError, match="corrupt results file"):
        kept_rows(out, [], ("cell",), {})


def test_fastest_kernel_keeps_the_rows_of_cells_whose_run_roots_are_gone(benchmark_script, tmp_path, monkeypatch):
    """With --keep, a cell measured again replaces its row, a cell whose export is gone keeps its earlier row (in the
    plan's order, marked kept), and a row of a plan not read this time is dropped."""
    import json
    import sys
    from types import SimpleNamespace

    import bpd_app.experiment as experiment

    fk = benchmark_script("fastest_kernel")
    plan = fk.ROOT / "benchmarks" / "plans" / "quick.yaml"
    rel = str(plan.relative_to(fk.ROOT))
    cells = [SimpleNamespace(dir=tmp_path / f"c{i}", key=f"E/m/seed{i}", env="E") for i in range(3)]
    (cells[1].dir / "export").mkdir(parents=True)
    kernel = {"candidates": {"integer": {"cost": {"cycles": 100}}, "compact": {"cost": {"cycles": 300}}}}
    (cells[1].dir / "export" / "export_report.json").write_text(json.dumps({"kernel": kernel}))
    monkeypatch.setattr(experiment, "load_plan", lambda p: SimpleNamespace(cells=lambda: cells))
    old = [{"plan": rel, "cell": f"E/m/seed{i}", "env": "E", "fastest": "integer", "integer_cycles": 50,
            "best_other": None, "best_other_cycles": None, "best_float": "compact", "best_float_cycles": 100}
           for i in (2, 1, 0)] + [{"plan": "benchmarks/plans/other.yaml", "cell": "F/m/seed0"}]
    out = tmp_path / "fk"
    out.with_suffix(".json").write_text(json.dumps({"command": "x", "rows": old}))
    monkeypatch.setattr(sys, "argv", ["fastest_kernel.py", str(plan), "--out", str(out), "--keep"])
    fk.main()
    res = json.loads(out.with_suffix(".json").read_text())
    assert [(r["cell"], r["integer_cycles"], r.get("kept", False)) for r in res["rows"]] == [
        ("E/m/seed0", 50, True), ("E/m/seed1", 100, False), ("E/m/seed2", 50, True)]
    assert res["command"].endswith(" --keep")
    assert "2 of the 3 students' rows kept" in out.with_suffix(".md").read_text()
