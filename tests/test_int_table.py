"""The integer kernel's table form (export/int_table.py) against known answers.

Hand-built networks with power-of-two weights, whose integer outputs are computed by hand: the host build
(C loops over the streams), the numpy model and the emulated Cortex-M4F build (the DSP assembly walking the
same streams) give exactly those. The streams of a hand-built layer are checked word by word; random
networks in every plan (all tables, mixed with straight-line layers, all straight-line) give the numpy
model's bits on the host and on the emulated Cortex-M4F; the object files have SMLAD on Cortex-M4F and no
float instruction on either core; a network the assembly cannot take runs the C loops there too.
"""

import json

import numpy as np
import pytest

from export.c_export import CPolicy
from export.collapse import CollapsedNet
from export.dsp import words
from export.fixed_point import IntPolicy, quantise
from export.int_plan import (
    SPLIT_CALL_BYTES,
    SPLIT_CALL_CYCLES,
    generate_int_table_kernel,
    head_rows,
    plan,
    split_layer,
    straight,
)
from export.int_table import INTERP_CYCLES, table_form, table_layer
from tests.test_codegen import hand_tanh_actions, hand_tanh_net, integer_object, needs_arm
from tests.test_export_c import random_net
from training.pairs import pair_columns


def _m4f(d, x, act_dim):
    """Outputs of the export in d built for Cortex-M4F and run under the emulator on the observations x."""
    pytest.importorskip("unicorn")
    from firmware_host.measure.bench import BENCH, emulate_build

    e = emulate_build("cortex-m4f", [d / "policy.c", d / "policy_weights.c", BENCH / "bench_bpd.c"], [d, BENCH],
                      d / "m4f", np.asarray(x, np.float32), act_dim, set(), ["policy", "policy_weights"])
    return e["outputs"]


def _pairs(q):
    return [pair_columns(L.wq) for L in q.layers]


def test_streams_of_a_hand_built_layer():
    """Three rows over four columns paired (0, 2) and (1, 3); the next layer takes the rows as (0, 2) and
    (1, None): rows in slot order 0, 2, 1 and a gap. Sparse: bias, then per used pair its weight word (low
    half: the pair's first column); bytes: count, byte offsets, shift. Dense: every pair's word."""
    wq = np.array([[3, 0, -1, 0], [0, 5, 0, 7], [2, 0, 4, 0]])
    bq = np.array([100, -2, 7])
    shift = np.array([9, 10, 11])
    pairs = [(0, 2), (1, 3)]
    nxt = [(0, 2), (1, None)]
    w = lambda lo, hi: (hi & 0xFFFF) << 16 | (lo & 0xFFFF)  # noqa: E731
    s = table_layer(wq, bq, shift, "tanh", pairs, nxt, "sparse")
    assert s.order == [0, 2, 1, None]
    assert s.words == [100, w(3, -1), 7, w(2, 4), 0xFFFFFFFE, w(5, 7), 0]
    assert s.bytes == [1, 0, 9, 1, 0, 11, 1, 4, 10, 0, 0] and s.longest == 1 and s.terms == 3
    d = table_layer(wq, bq, shift, "tanh", pairs, nxt, "dense")
    assert d.words == [100, w(3, -1), 0, 7, w(2, 4), 0, 0xFFFFFFFE, 0, w(5, 7), 0, 0, 0]
    assert d.bytes == [9, 11, 10, 0]
    out = table_layer(wq, bq, shift, "output", pairs, None, "sparse")
    assert out.order == [0, 1, 2] and out.bytes == [1, 0, 1, 4, 1, 0]  # no shift after an output row


def test_plan_spends_the_room_it_is_given():
    """No room: tanh interpolated and no more flash than every layer a table; a large room: every layer
    straight-line and the whole table; between, the estimated extra flash stays within the room and the
    estimated cycles fall."""
    rng = np.random.default_rng(3)
    net = random_net(rng, [16, 40, 30, 3], 0.4)
    q = quantise(net, rng.normal(0, 1, (500, 16)), "test")
    p0, e0 = plan(q, _pairs(q), 0)
    assert p0.tanh == "interpolated" and e0["extra_flash"] <= 0 and e0["cycles"] <= e0["table_cycles"]
    big, eb = plan(q, _pairs(q), 10**6)
    assert big.tanh == "full" and all(f == "straight" or li in big.split for li, f in enumerate(big.forms))
    assert eb["cycles"] <= sum(straight(q, li, _pairs(q), True).cycles() for li in range(3)) < e0["cycles"]
    small, es = plan(q, _pairs(q), 100)  # no whole layer fits in 100 bytes: the head of one does
    assert small.split and 0 < es["extra_flash"] <= 100 and es["cycles"] < e0["cycles"]
    split = 0
    for room in (500, 2000, 4000):
        p, e = plan(q, _pairs(q), room)
        assert e["extra_flash"] <= room and eb["cycles"] <= e["cycles"] <= e0["cycles"]
        split += bool(p.split)
    assert split  # the room a whole layer does not fit in is spent on the head of one


def test_a_split_layer_counts_its_head_and_tail():
    """Layer 1 of 16-40-30-3 split after k slots: the head's rows are those of the first k slots of the table
    form's order, the tail is the table form from slot k (its words those of the whole layer's rows after
    them), and the estimates add up."""
    rng = np.random.default_rng(3)
    net = random_net(rng, [16, 40, 30, 3], 0.4)
    q = quantise(net, rng.normal(0, 1, (500, 16)), "test")
    pairs = _pairs(q)
    T = table_form(q, 1, pairs)
    h = split_layer(q, 1, pairs, T, 10, False)
    assert h.tail.order == T.order[10:] and head_rows(T, 10) == [r for r in T.order[:10] if r is not None]
    assert h.tail.form == T.form and h.tail.terms == sum(int(np.count_nonzero(words(q.layers[1].wq[[r]], pairs[1])))
                                                         for r in T.order[10:] if r is not None)
    assert h.cycles == h.code.cycles() + h.tail.cycles() + INTERP_CYCLES * len(h.tail.order) + SPLIT_CALL_CYCLES
    assert h.extra == h.code.flash() + h.tail.flash() - T.flash() + SPLIT_CALL_BYTES


@needs_arm
def test_hand_computed_relu_network_sparse_and_dense_on_cortex_m4f(tmp_path):
    """16 -> 2 -> 1, ReLU and clip: row 0 takes half of inputs 0-7, row 1 a quarter of inputs 8-15, so the first
    layer has eight input words (sparse: four terms a row) and the second one (dense). With dyadic inputs
    every quantity is exact: h0 = 1.0625, h1 = 0.0625, y = h0 - h1 / 2 + 0.25 = 1.28125."""
    w0 = np.zeros((2, 16), np.float32)
    w0[0, :8], w0[1, 8:] = 0.5, 0.25
    net = CollapsedNet([w0, np.array([[1.0, -0.5]], np.float32)],
                       [np.array([0.125, -0.5], np.float32), np.array([0.25], np.float32)], "relu", "clip",
                       np.array([-8.0], np.float32), np.array([8.0], np.float32), [16, 2, 1])
    q = quantise(net, np.array([[1.0] * 16, [-1.0] * 16], np.float32), "hand")
    info = generate_int_table_kernel(net, q, tmp_path, "0" * 64, "t", tables_only=True)
    assert [L["form"] for L in info["layers"]] == ["sparse", "dense"] and info["assembly"]
    x = np.array([[0.5, 0.25, -0.25, 1, 0, 0.75, -0.5, 0.125, 1, 1, 0.5, 0.5, -1, 0.25, 0, 0],
                  [-1] * 8 + [1] * 8], np.float32)
    # second row: h0 = relu(-4 + 0.125) = 0, h1 = 2 - 0.5 = 1.5, y = -0.75 + 0.25
    want = np.array([[1.28125], [-0.5]], np.float32)
    np.testing.assert_array_equal(CPolicy(tmp_path).act(x), want)
    np.testing.assert_array_equal(IntPolicy(q).act(x), want)
    np.testing.assert_array_equal(_m4f(tmp_path, x, 1), want)


@needs_arm
def test_hand_computed_tanh_network_on_the_interpolated_table_on_cortex_m4f(tmp_path):
    """The 2 -> 2 -> 1 tanh network of test_codegen's DSP test: each hidden tanh interpolated between two
    knots (hand_tanh_actions), -1024 (a saturated input) from the first knot; the action is (T + 1) >> 1 in
    Q14. A NaN or infinite observation gives the safe action (0)."""
    net, q = hand_tanh_net()
    info = generate_int_table_kernel(net, q, tmp_path, "0" * 64, "t", tables_only=True)
    assert info["plan"] == "dense+dense, interpolated tanh table"
    x = np.array([[0.5, 0.25], [0.25, -0.75], [100.0, -100.0], [-0.75, 0.5]], np.float32)
    want = hand_tanh_actions(x)
    np.testing.assert_array_equal(CPolicy(tmp_path).act(x), want)
    np.testing.assert_array_equal(IntPolicy(q).act(x), want)
    bad = np.array([[np.nan, 0.5], [0.5, np.inf], [-np.inf, 0.5]], np.float32)
    np.testing.assert_array_equal(_m4f(tmp_path, np.concatenate([x, bad]), 1),
                                  np.concatenate([want, np.zeros((3, 1), np.float32)]))


@needs_arm
def test_a_layer_whose_weights_all_quantise_to_zero_is_sparse_and_gives_its_biases(tmp_path):
    """2 -> 2 -> 1 tanh/clip whose first layer's weights (1e-9) are below its int16 step: that layer reads no input
    word, so it is sparse (the dense form, which loads one word or more, refused it: 'a dense layer takes 1 to 6
    input words, not 0'), its units tanh(0) = 0 and the action the output's bias, 0.25, exactly: on the host, in
    the numpy model and on the emulated Cortex-M4F."""
    net = CollapsedNet([np.array([[1e-9, -1e-9], [1e-9, 1e-9]], np.float32), np.array([[0.5, 0.25]], np.float32)],
                       [np.zeros(2, np.float32), np.array([0.25], np.float32)], "tanh", "clip",
                       np.array([-1.0], np.float32), np.array([1.0], np.float32), [2, 2, 1])
    q = quantise(net, np.array([[1.0, 1.0], [-1.0, -1.0]], np.float32), "hand")
    assert not q.layers[0].wq.any()
    assert table_form(q, 0, _pairs(q)).form == "sparse"
    generate_int_table_kernel(net, q, tmp_path, "0" * 64, "t", tables_only=True)
    x = np.array([[0.5, 0.25], [-3.0, 7.0], [100.0, -100.0]], np.float32)
    want = np.full((3, 1), 0.25, np.float32)
    np.testing.assert_array_equal(CPolicy(tmp_path).act(x), want)
    np.testing.assert_array_equal(IntPolicy(q).act(x), want)
    np.testing.assert_array_equal(_m4f(tmp_path, x, 1), want)


def _odd_net(activation: str, output: str):
    """Widths 16-21-9-3 (odd: the next layer's zero half is a gap row) quantised on its calibration states, ten
    observations in and far out of range, and the numpy model's bits on them."""
    rng = np.random.default_rng(7)
    net = random_net(rng, [16, 21, 9, 3], 0.4, activation, output)
    calib = rng.normal(0, 0.5, (1000, 16)).astype(np.float32)
    q = quantise(net, calib, "test")
    x = np.concatenate([calib[:6], rng.normal(0, 20, (4, 16))]).astype(np.float32)
    return net, q, x, IntPolicy(q).act(x).view(np.uint32)


@needs_arm
@pytest.mark.parametrize("activation,output", [("tanh", "tanh"), ("relu", "clip"), ("relu", "tanh")])
def test_every_plan_gives_the_numpy_models_bits_on_the_host_and_on_cortex_m4f(tmp_path, activation, output):
    """Widths 16-21-9-3 (odd: the next layer's zero half is a gap row; 8 input words: sparse, 5: dense) in
    the all-table plan, a mixed one and the all-straight one; observations in and far out of range."""
    net, q, x, want = _odd_net(activation, output)
    plans = set()
    for room in (-1, plan(q, _pairs(q), 10**6)[1]["extra_flash"] // 2, 10**6):  # -1: every layer a table
        d = tmp_path / str(room)
        info = generate_int_table_kernel(net, q, d, "0" * 64, "t", max(room, 0), tables_only=room < 0)
        plans.add(info["plan"])
        assert np.array_equal(CPolicy(d).act(x).view(np.uint32), want)
        assert np.array_equal(_m4f(d, x, 3).view(np.uint32), want), info["plan"]
    assert len(plans) == 3, plans


@needs_arm
@pytest.mark.parametrize("activation,output", [("tanh", "tanh"), ("relu", "clip")])
def test_split_layers_give_the_numpy_models_bits_on_cortex_m4f(tmp_path, activation, output):
    """16-21-9-3 with one layer split at a time: the first (sparse) after 7 of its 22 slots and after 21 (its tail
    the gap of the odd width alone, written 0), the second (sparse; 8 slots, the row the output does not use left
    out) after 3, and the output (dense) after its first row, with each tanh table; the straight-line head and the
    table's tail write their own slots of one buffer."""
    from export.fixed_point import write_kernel
    from export.int_plan import Plan, kernel_source

    net, q, x, want = _odd_net(activation, output)
    forms = [table_form(q, li, _pairs(q)).form for li in range(3)]
    assert forms == ["sparse", "sparse", "dense"]
    assert table_form(q, 0, _pairs(q)).order[21:] == [None] and len(table_form(q, 1, _pairs(q)).order) == 8
    full = "full" if activation == "tanh" else "interpolated"
    cases = [({0: 7}, "interpolated"), ({0: 21}, full), ({1: 3}, full), ({2: 1}, "interpolated")]
    for i, (split, tanh) in enumerate(cases):
        d = tmp_path / str(i)
        p = Plan(forms, tanh, split)
        info = write_kernel(net, d, "0" * 64, "t", "integer-table", lambda b, p=p: kernel_source(q, b, forced=p))
        li, k = next(iter(split.items()))
        assert info["layers"][li]["straight_slots"] == k and "straight-line slots" in info["plan"]
        assert np.array_equal(CPolicy(d).act(x).view(np.uint32), want)
        assert np.array_equal(_m4f(d, x, 3).view(np.uint32), want), info["plan"]


@needs_arm
@pytest.mark.parametrize("target", ["cortex-m0plus", "cortex-m4f"])
def test_object_file_has_smlad_on_cortex_m4f_and_no_float_instruction(tmp_path, target):
    rng = np.random.default_rng(2)
    net = random_net(rng, [16, 21, 3], 0.4)
    generate_int_table_kernel(net, quantise(net, rng.normal(size=(200, 16)), "test"), tmp_path, "0" * 64, "t",
                              tables_only=True)
    mnemonics = integer_object(tmp_path, target)
    assert len(mnemonics) > 30
    assert ("smlad" in mnemonics) == ("tbh" in mnemonics) == (target == "cortex-m4f")


@needs_arm
def test_a_negative_shift_runs_the_c_loops_on_cortex_m4f(tmp_path):
    """A ReLU layer that is 0 on every calibration state gets the finest Q format (Q24) while its large weights
    keep the row's exponent small (17): its shift is negative, which the assembly's ASR cannot do. The C
    loops run on Cortex-M4F too, and give the numpy model's bits."""
    net = CollapsedNet([np.array([[1024.0, -1024.0]], np.float32), np.array([[0.001]], np.float32)],
                       [np.array([0.0], np.float32), np.array([0.0], np.float32)], "relu", "clip",
                       np.array([-4.0], np.float32), np.array([4.0], np.float32), [2, 1, 1])
    q = quantise(net, np.array([[1.0, 1.0], [-1.0, -1.0], [0.5, 0.5]], np.float32), "hand")
    assert q.layers[0].shift.tolist() == [17 - 24]
    info = generate_int_table_kernel(net, q, tmp_path, "0" * 64, "t")
    assert not info["assembly"] and "negative activation shift" in info["scalar_reason"]
    x = np.array([[0.5, 0.25], [0.001, 0.0], [-1, 1]], np.float32)
    np.testing.assert_array_equal(_m4f(tmp_path, x, 1), IntPolicy(q).act(x))
    np.testing.assert_array_equal(CPolicy(tmp_path).act(x), IntPolicy(q).act(x))


def test_layers_too_wide_for_registers_are_sparse_and_narrow_dense_ones_dense():
    rng = np.random.default_rng(4)
    net = random_net(rng, [4, 30, 2], 0.9)
    q = quantise(net, rng.normal(size=(100, 4)), "test")
    assert [table_form(q, li, _pairs(q)).form for li in range(2)] == ["dense", "sparse"]


def _meter(flash, cycles=None):
    """A meter: the integer kernels ten times cheaper than a float kernel (or each directory's cycles from
    cycles), each directory's flash from flash."""
    def meter(d):
        integer = d.name.startswith("integer")
        return {"cycles": (cycles or {}).get(d.name, 100.0 if integer else 1000.0),
                "flash_bytes": flash.get(d.name, 1000), "instructions": 100,
                "max_abs_error_vs_host_c": 0.0}
    return meter


def test_auto_builds_the_table_form_only_where_the_integer_kernel_is_over_the_budget(tiny_pipeline, tmp_path):
    """Within the budget the straight-line integer kernel is weighed alone (the table form would spend the
    room on becoming it); over it, the table form is built, fitted to the budget, checked like it and, cheapest
    and keeping the return, shipped: an integer kernel (its variant integer-table), bit for bit its numpy model."""
    from export.collapse import collapse
    from export.export import ExportConfig, load_source, run_export
    from export.verify import verify_export
    from training.collect import load_dataset

    src = str(tiny_pipeline / "run")
    rep = run_export(ExportConfig(source=src, out=str(tmp_path / "wide"), episodes=0, parity_samples=300,
                                  int_flash_ratio=0.0), meter=_meter({}))
    assert "integer-table" not in rep["kernel"]["candidates"]
    assert "within its flash limit" in rep["kernel"]["skipped"]["integer-table"]
    out = tmp_path / "small"
    rep = run_export(ExportConfig(source=src, out=str(out), episodes=1, parity_samples=300, flash_budget=3000,
                                  int_flash_ratio=0.0), meter=_meter({"integer": 5000, "integer-interp": 4000}))
    k = rep["kernel"]
    assert k["variant"] == "integer-table" and k["kind"] == "integer", k["candidates"]["integer-table"]
    assert "return over 10 paired episodes" in k["candidates"]["integer-table"]["verdict"]  # 10 batches of 1
    fit = k["candidates"]["integer-table"]["fit"]
    assert fit["flash_budget"] == 3000 and fit["tries"][0]["room"] == 0 and fit["tries"][0]["flash_bytes"] == 1000
    assert json.loads((out / "export.json").read_text())["kernel"] == "integer"
    verify_export(out)
    net = collapse(load_source(src).policy)
    q = quantise(net, load_dataset(str(tiny_pipeline / "dataset.npz"), net.obs_dim).observations, "test")
    obs = np.random.default_rng(3).normal(0, 1, (64, net.obs_dim)).astype(np.float32)
    assert np.array_equal(CPolicy(out).act(obs).view(np.uint32), IntPolicy(q).act(obs).view(np.uint32))


def test_auto_holds_the_integer_forms_to_the_int_flash_ratio(tiny_pipeline, tmp_path):
    """The integer kernel's forms give the same integers; auto weighs each only within --int-flash-ratio times
    the generic kernel's flash: the lookup (fewest cycles) where it fits, else the interpolating form, else
    the table form fitted to that limit; with the ratio off (0), the lookup."""
    from export.export import ExportConfig, run_export

    src = str(tiny_pipeline / "run")
    cycles = {"integer": 100.0, "integer-interp": 130.0}
    meter = _meter({"generic": 1000, "integer": 2000, "integer-interp": 1400}, cycles)
    rep = run_export(ExportConfig(source=src, out=str(tmp_path / "a"), episodes=1, parity_samples=300), meter=meter)
    k = rep["kernel"]
    assert k["variant"] == "integer-interp" and k["kind"] == "integer" and k["int_flash_limit"] == 1500
    assert "--int-flash-ratio" in k["candidates"]["integer"]["verdict"] and "interpolated" in k["form"]
    assert "within its flash limit" in k["skipped"]["integer-table"]
    rep = run_export(ExportConfig(source=src, out=str(tmp_path / "b"), episodes=1, parity_samples=300,
                                  int_flash_ratio=0.0), meter=meter)
    k = rep["kernel"]
    assert k["variant"] == "integer" and "lookup" in k["form"]
    assert k["candidates"]["integer-interp"]["verdict"] == "the rule picks integer"
    # neither straight-line form within 1.2x: the table form, fitted to 1,200 B
    rep = run_export(ExportConfig(source=src, out=str(tmp_path / "c"), episodes=1, parity_samples=300,
                                  int_flash_ratio=1.2), meter=meter)
    k = rep["kernel"]
    assert k["variant"] == "integer-table" and k["candidates"]["integer-table"]["fit"]["flash_budget"] == 1200
    assert all("--int-flash-ratio" in k["candidates"][n]["verdict"] for n in ("integer", "integer-interp"))


def test_forced_table_form_without_a_meter(tiny_pipeline, tmp_path):
    """--kernel integer-table without a meter: fitted to the budget by its estimate alone, shipped."""
    from export.export import ExportConfig, run_export

    rep = run_export(ExportConfig(source=str(tiny_pipeline / "run"), out=str(tmp_path / "e"), episodes=0,
                                  parity_samples=300, kernel="integer-table", flash_budget=4000))
    k = rep["kernel"]
    assert k["variant"] == "integer-table" and k["rule"] == "forced by --kernel" and rep["parity"]["pass"]
    assert k["fit"]["flash_budget"] == 4000 and k["fit"]["tries"][0]["flash_bytes"] is None
    assert k["table"]["estimate"]["flash"] <= 4000 or len(k["fit"]["tries"]) == 1


def test_table_form_spends_the_bytes_a_fit_left_and_keeps_the_fit_when_more_is_over(tiny_pipeline, tmp_path):
    """A fit that leaves FIT_SLACK or more of the budget is tried once more with those bytes added; one over the
    budget after it leaves the fit standing (its directory built again): the shipped kernel is the fit's."""
    from export.export import ExportConfig, run_export
    from export.integer import FIT_SLACK

    flashes = iter([1100, 1300])  # the fit 100 B under the 1,200 B budget, the next try over it

    def meter(d):
        flash = 1000 if d.name == "integer-table-least" else next(flashes, 1100) if d.name == "integer-table" \
            else 5000
        return {"cycles": 100.0 if d.name.startswith("integer") else 1000.0, "flash_bytes": flash,
                "instructions": 100, "max_abs_error_vs_host_c": 0.0}

    rep = run_export(ExportConfig(source=str(tiny_pipeline / "run"), out=str(tmp_path / "s"), episodes=1,
                                  parity_samples=300, flash_budget=1200, int_flash_ratio=0.0), meter=meter)
    t = rep["kernel"]["candidates"]["integer-table"]
    tries = t["fit"]["tries"]
    assert [x["room"] for x in tries] == [0, 200, 300], tries  # the fit's 100 B left (>= FIT_SLACK) spent too
    assert 1200 - 1100 >= FIT_SLACK and [x["flash_bytes"] for x in tries] == [1000, 1100, 1300]
    assert tries[2]["plan"] != tries[1]["plan"]
    assert t["table"]["plan"] == tries[1]["plan"] and t["cost"]["flash_bytes"] == 1100  # the fit, built again
