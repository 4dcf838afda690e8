"""The compact kernel and the rule that picks the kernel an export ships.

Known answers: hand-built networks whose float64 forward pass is the reference; the compact kernel's
schedule (chunks of 16 inputs, groups of 15 weights) exercised at its edges; the assembly built for
Cortex-M4F and run under the emulator against the host build; the choice rule on hand-made figures.
"""

import re
import shutil
import subprocess

import numpy as np
import pytest

from export.c_export import CPolicy
from export.codegen import LIBM, tanh_forms
from export.collapse import CollapsedNet
from export.compact import CHUNK, GROUP, generate_compact, schedule
from export.kernels import FLASH_BUDGET, choose


def _net(widths, density=0.5, seed=0, activation="tanh", output="tanh", offset=True):
    rng = np.random.default_rng(seed)
    ws, bs = [], []
    for a, b in zip(widths[:-1], widths[1:]):
        w = rng.normal(0, 1 / np.sqrt(a), (b, a)) * (rng.random((b, a)) < density)
        ws.append(w.astype(np.float32))
        bs.append(rng.normal(0, 0.2, b).astype(np.float32))
    n = widths[-1]
    return CollapsedNet(ws, bs, activation, output, -2 * np.ones(n, np.float32), 2 * np.ones(n, np.float32),
                        list(widths), rng.normal(0, 1, widths[0]).astype(np.float32) if offset else None)


def _compact(net, d, form=None):
    generate_compact(net, d, "0" * 64, "test", form or tanh_forms()[-2])
    return CPolicy(d)


def test_schedule_orders_bias_then_weights_by_chunk():
    """A 2x20 layer: row 0 has weights in both chunks, row 1 only in the second; the table holds each
    row's bias once, at its first chunk, then its weights in column order."""
    w = np.zeros((2, 20), np.float32)
    w[0, [1, 17]] = [1.0, 2.0]
    w[1, [18]] = [3.0]
    chunks, table = schedule(w, np.array([10.0, 20.0], np.float32))
    assert [(c0, n, es) for c0, n, es in chunks] == [(0, 16, [(0, [1])]), (16, 4, [(0, [17]), (1, [18])])]
    assert table.tolist() == [10.0, 1.0, 2.0, 20.0, 3.0]


def test_hand_built_network_gives_the_known_answer(tmp_path):
    """2 -> 2 -> 1, tanh then clip: y = clip(0.5 * tanh(x0 - 1) - tanh(2 x1 + 0.25) + 0.1)."""
    net = CollapsedNet([np.array([[1.0, 0.0], [0.0, 2.0]], np.float32), np.array([[0.5, -1.0]], np.float32)],
                       [np.array([-1.0, 0.25], np.float32), np.array([0.1], np.float32)], "tanh", "clip",
                       np.array([-1.0], np.float32), np.array([1.0], np.float32), [2, 2, 1])
    pol = _compact(net, tmp_path / "k", LIBM)
    for x0, x1 in ((0.0, 0.0), (1.0, -0.5), (3.0, 0.7), (-2.0, 5.0)):
        want = np.clip(0.5 * np.tanh(x0 - 1) - np.tanh(2 * x1 + 0.25) + 0.1, -1, 1)
        assert pol.act(np.array([x0, x1], np.float32))[0] == pytest.approx(want, abs=1e-6)


@pytest.mark.parametrize("offset", [None, [1.0, -2.0]], ids=["plain", "offset"])
@pytest.mark.parametrize("output", ["clip", "tanh"])
def test_a_network_without_a_hidden_layer_gives_the_known_answer(tmp_path, offset, output):
    """2 -> 1, no hidden layer (a linear teacher's export: the compact kernel once declared a buffer it never used,
    an error under -Werror): y = 0.5 (x0 - m0) - 0.25 (x1 - m1) + 0.125, exact in float32 on these inputs, clipped
    to +-1 or through tanh."""
    net = CollapsedNet([np.array([[0.5, -0.25]], np.float32)], [np.array([0.125], np.float32)], "tanh", output,
                       np.array([-1.0], np.float32), np.array([1.0], np.float32), [2, 1],
                       None if offset is None else np.array(offset, np.float32))
    pol = _compact(net, tmp_path / "k", LIBM)
    m = np.zeros(2) if offset is None else np.array(offset)
    for x0, x1 in ((0.0, 0.0), (1.0, -0.5), (3.0, 0.75), (-2.0, 5.0)):
        y = 0.5 * (x0 - m[0]) - 0.25 * (x1 - m[1]) + 0.125
        want = np.tanh(y) if output == "tanh" else np.clip(y, -1, 1)
        assert pol.act(np.array([x0, x1], np.float32))[0] == pytest.approx(want, abs=1e-6 if output == "tanh" else 0)


@pytest.mark.parametrize("widths,density,activation,output", [
    ([40, 37, 3], 0.9, "tanh", "tanh"), ([11, 61, 50, 3], 0.35, "tanh", "tanh"), ([4, 15, 7, 1], 1.0, "tanh", "clip"),
    ([6, 20, 2], 0.7, "relu", "tanh"), ([6, 20, 2], 0.7, "relu", "clip")])
def test_compact_kernel_matches_the_float64_network(tmp_path, widths, density, activation, output):
    """Wide inputs (three chunks), rows with more weights in a chunk than one load takes, dense layers,
    ReLU hidden layers under either output (compiled with warnings as errors)."""
    net = _net(widths, density, activation=activation, output=output)
    if widths[0] == 40:  # the case that splits a row's weights in one chunk over two loads
        assert (np.count_nonzero(net.weights[0][:, :CHUNK], axis=1) > GROUP).any()
    pol = _compact(net, tmp_path / "k")
    obs = np.random.default_rng(1).normal(0, 1, (200, widths[0])).astype(np.float32)
    assert np.abs(pol.act(obs) - net.act(obs)).max() < 2e-5


def test_compact_kernel_refuses_nonfinite_input_with_the_safe_action(tmp_path):
    net = _net([5, 8, 2])
    net.action_low[:] = [0.5, -1.0]  # the safe action is zero clamped into the bounds: [0.5, 0]
    pol = _compact(net, tmp_path / "k")
    for bad in (np.nan, np.inf, -np.inf):
        x = np.zeros(5, np.float32)
        x[3] = bad
        rc, a = pol.run(x)
        assert rc == -1 and a.tolist() == [0.5, 0.0]


def test_dead_output_row_outputs_its_bias(tmp_path):
    net = _net([3, 4, 2], 1.0)
    net.weights[1][1] = 0.0
    pol = _compact(net, tmp_path / "k")
    a = pol.act(np.zeros(3, np.float32))
    assert a[1] == pytest.approx(np.clip(2 * np.tanh(net.biases[1][1]), -2, 2), abs=1e-6)


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed")
def test_compact_assembly_on_cortex_m4f_agrees_with_the_host_build(tmp_path, monkeypatch):
    """The Cortex-M4F build runs the generated assembly: straight-line VLDMIA/VFMA layers, the same
    actions as the host's C schedule (fused there, unfused here: float32 rounding apart)."""
    pytest.importorskip("unicorn")
    monkeypatch.setenv("BPD_CACHE_DIR", "off")  # built here, whatever the run's cache holds: its object is read
    from firmware_host.measure.bench import kernel_cost

    net = _net([17, 40, 30, 6], 0.4)
    d = tmp_path / "k"
    _compact(net, d)
    cost = kernel_cost(d, "cortex-m4f")
    assert cost["max_abs_error_vs_host_c"] < 1e-5
    obj = next((d / "build" / "cost-cortex-m4f").rglob("policy.o"))
    dis = subprocess.run(["arm-none-eabi-objdump", "-d", str(obj)], capture_output=True, text=True, check=True).stdout
    layer0 = dis.split("<bpd_layer0>:")[1].split("\n\n")[0]
    assert layer0.count("vfma.f32") == np.count_nonzero(net.weights[0])
    assert "vldmia" in layer0 and not any(f"\t{b}" in layer0 for b in ("b.n", "bne", "beq", "b.w"))
    # the Cortex-M0+ build takes the C schedule: no FP instruction at all
    m0 = kernel_cost(d, "cortex-m0plus")
    assert m0["max_abs_error_vs_host_c"] < 1e-5


def test_choice_rule_on_hand_made_figures():
    f = {"generic": {"cycles": 30000, "flash_bytes": 9000}, "compact": {"cycles": 10000, "flash_bytes": 15000},
         "generated": {"cycles": 9900, "flash_bytes": 40000}}
    assert choose(f, FLASH_BUDGET)[0] == "compact"      # generated is within 2 % of it: the least flash wins
    f["generated"]["cycles"] = 8000
    assert choose(f, FLASH_BUDGET)[0] == "generated"    # 20 % fewer cycles, within the budget
    assert choose(f, 20000)[0] == "compact"              # generated over the budget
    assert choose(f, 5000)[0] == "generic"               # nothing fits: the least flash
    kind, why = choose({"generic": None, "compact": None}, FLASH_BUDGET)
    assert kind == "compact" and "not measured" in why
    assert choose({"generic": None}, FLASH_BUDGET)[0] == "generic"  # compact not built (too big)
    # without a meter, compact left out (over parity): the next built, and the reason does not say compact was not built
    kind, why = choose({"generic": None, "compact-table": None, "generated": None}, FLASH_BUDGET)
    assert kind == "compact-table" and why.endswith("(compact, compact-table, generated, generated-table, generic: "
                                                    "the first built and not left out)")


def test_report_names_the_shipped_form_and_the_integer_forms_over_their_flash_limit():
    """The export's summary line names the variant shipped (not only its family) and marks an integer form the
    rule could not take for its flash, so that a cheaper form listed beside it is not read as overlooked."""
    from export.report import format_report

    k = {"kind": "integer", "variant": "integer-interp", "rule": "fewest estimated cortex-m4f cycles (476)",
         "measured_on": "cortex-m4f", "int_flash_limit": 1923, "candidates": {
             "generic": {"cost": {"cycles": 4895, "flash_bytes": 1282}},
             "integer": {"cost": {"cycles": 399, "flash_bytes": 5158}},
             "compact-table": {"cost": {"cycles": 1172, "flash_bytes": 3298}},  # over 1923 B, not held to it
             "integer-interp": {"cost": {"cycles": 476, "flash_bytes": 1834}, "verdict": "return kept"}}}
    r = {"layers": [], "totals": {"flash_bytes": 0, "ram_activation_bytes": 0, "macs": 0},
         "dense_teacher": {"flash_bytes": 1, "ram_activation_bytes": 1, "macs": 1, "widths": [1]},
         "flash_vs_teacher": 0.0, "macs_vs_teacher": 0.0,
         "parity": {"tolerance": 1e-5, "states": 1}, "kernel": k}
    line = next(x for x in format_report(r).splitlines() if x.startswith("kernel "))
    assert line.startswith("kernel integer-interp: ")
    assert "integer 399 cycles / 5158 B over the 1923 B integer limit," in line
    assert "integer-interp 476 cycles / 1834 B)" in line and "generic 4895 cycles / 1282 B," in line
    assert "compact-table 1172 cycles / 3298 B," in line
    assert not [x for x in format_report(r).splitlines() if "not shipped" in x]  # nothing cheaper left out
    # the limit the integer forms are over is the default --int-flash-ratio's, which the rule's line did not name
    assert "  the integer limit, 1923 B: --int-flash-ratio 1.5 times the generic kernel's 1282 B (--int-flash-ratio " \
        "0: --flash-budget alone)" in format_report(r | {"kernel": k | {"int_flash_ratio": 1.5}}).splitlines()
    # a float kernel shipped while a cheaper integer form within its flash limit was left out for a reason the rule
    # does not give (no closed-loop check): the reason is printed; the one over its flash limit is not repeated
    k2 = k | {"kind": "generated", "variant": "generated-table", "rule": "fewest estimated cortex-m4f cycles (958)",
              "tanh": "table-16", "tanh_max_abs_error": 2.5e-7, "tanh_budget": 1e-5}
    k2["candidates"] = k["candidates"] | {
        "generated-table": {"cost": {"cycles": 958, "flash_bytes": 4872}},
        "integer": {"cost": {"cycles": 322, "flash_bytes": 5084}, "verdict": "over the integer kernel's flash limit"},
        "integer-interp": {"cost": {"cycles": 398, "flash_bytes": 1756},
                           "verdict": "no closed-loop check with --episodes 0"}}
    left = [x for x in format_report(r | {"kernel": k2}).splitlines() if "not shipped" in x]
    assert left == ["  integer-interp (398 cycles) not shipped: no closed-loop check with --episodes 0"]
    # both forms within the limit, neither checked: the pick's reason, and the other's as the export words it
    k3 = k2 | {"candidates": k2["candidates"] | {
        "integer": {"cost": {"cycles": 322, "flash_bytes": 1500}, "verdict": "no closed-loop check with --episodes 0"},
        "integer-interp": {"cost": {"cycles": 398, "flash_bytes": 1756}, "verdict":
                           "the same integers as integer, not shipped: no closed-loop check with --episodes 0"}}}
    assert [x for x in format_report(r | {"kernel": k3}).splitlines() if "not shipped" in x] == [
        "  integer (322 cycles) not shipped: no closed-loop check with --episodes 0",
        "  integer-interp (398 cycles) not shipped: the same integers as integer, not shipped: no closed-loop check "
        "with --episodes 0"]
    # an integer form shipped (the other within 2 % of its cycles, more flash): "the rule picks" is the rule line's news
    k4 = k | {"candidates": k["candidates"] | {
        "integer": {"cost": {"cycles": 470, "flash_bytes": 1900}, "verdict": "the rule picks integer-interp"}}}
    assert not [x for x in format_report(r | {"kernel": k4}).splitlines() if "not shipped" in x]
    # no teacher: the dense figures are the student's own shape's, and the line says how to compare with the teacher
    alone = r | {"dense_teacher": r["dense_teacher"] | {"widths": [4, 16, 1], "note": "no teacher"}}
    assert format_report(alone).splitlines()[4].startswith("dense, the student's own shape 4x16x1 (no teacher found: "
                                                           "--teacher FILE compares with it): weights 1 B")
    # no dataset: said on screen, not in the report alone
    assert not [x for x in format_report(r).splitlines() if x.startswith("note:")]
    lost = r | {"parity": r["parity"] | {"origin": "2000 uniform within mean +- 3 std (no dataset found)"}}
    assert [x for x in format_report(lost).splitlines() if x.startswith("note:")] == [
        "note: no dataset found (the run's is gone, or none given): the parity states are uniform within the "
        "observations' mean +- 3 std, and an integer kernel is calibrated on them; --dataset FILE checks on the "
        "states the policy meets"]



def test_report_marks_the_kernels_over_the_flash_budget():
    """--flash-budget 1600 on a student whose generic kernel takes 1572 B: the generic kernel (7846 cycles) ships
    while compact (2399 cycles, 1950 B) is listed beside it unmarked, as if the rule had passed over a kernel three
    times cheaper. A kernel over the budget now says so, as an integer form over its own limit did."""
    from export.report import format_report

    k = {"kind": "generic", "variant": "generic", "flash_budget": 1600, "int_flash_limit": 1600,
         "rule": "fewest estimated cortex-m4f cycles (7846; within 2 % of the fewest, the least flash) among the "
                 "kernels within the 1600 B flash budget", "measured_on": "cortex-m4f", "candidates": {
             "generic": {"cost": {"cycles": 7846, "flash_bytes": 1572}},
             "compact": {"cost": {"cycles": 2399, "flash_bytes": 1950}},
             "integer-interp": {"cost": {"cycles": 563, "flash_bytes": 2290}, "verdict": "over the limit"}}}
    r = {"layers": [], "totals": {"flash_bytes": 0, "ram_activation_bytes": 0, "macs": 0},
         "dense_teacher": {"flash_bytes": 1, "ram_activation_bytes": 1, "macs": 1, "widths": [1]},
         "flash_vs_teacher": 0.0, "macs_vs_teacher": 0.0, "parity": {"tolerance": 1e-5, "states": 1}, "kernel": k}
    line = next(x for x in format_report(r).splitlines() if x.startswith("kernel "))
    assert line.endswith("(cortex-m4f, estimated cycles / policy flash: generic 7846 cycles / 1572 B, compact 2399 "
                         "cycles / 1950 B over the 1600 B budget, integer-interp 563 cycles / 2290 B over the 1600 B "
                         "integer limit)")


def test_report_says_which_flash_is_the_weights_and_which_the_shipped_kernels():
    """`student: flash` was the generic kernel's weight storage, read as the policy's flash: the report names it
    weights and gives the shipped kernel's own flash (code and data in the linked image), instructions, cycles and
    stack (the figure a firmware sizes its stack by)."""
    from export.report import format_report

    k = {"kind": "integer", "variant": "integer-table", "rule": "fewest estimated cortex-m4f cycles (1437)",
         "measured_on": "cortex-m4f", "candidates": {
             "generic": {"cost": {"cycles": 18287, "flash_bytes": 2762, "instructions": 9982}},
             "integer-table": {"cost": {"target": "cortex-m4f", "cycles": 1437.0, "flash_bytes": 4068,
                                        "instructions": 890, "us": 1437 / 168, "stack_bytes": 140}}}}
    r = {"layers": [], "totals": {"flash_bytes": 1882, "ram_activation_bytes": 256, "macs": 338},
         "dense_teacher": {"flash_bytes": 269316, "ram_activation_bytes": 2048, "macs": 66816, "widths": [4, 256, 1]},
         "flash_vs_teacher": 1882 / 269316, "macs_vs_teacher": 338 / 66816,
         "parity": {"tolerance": 1e-5, "states": 1}, "kernel": k, "returns": {"episodes": 1, "c": {"return_mean": 5}}}
    lines = format_report(r).splitlines()
    assert lines[3] == ("student: weights 1882 B and activation RAM 256 B as the generic kernel stores them (values, "
                        "indices, biases, the output's constants and any input offset; two buffers of the widest "
                        "layer), 338 MACs/inference")
    assert lines[4] == "dense teacher 4x256x1: weights 269316 B, activation RAM 2048 B, 66816 MACs"
    assert lines[5] == "weights 0.70 % of the teacher's, MACs 0.51 %"
    assert "(cortex-m4f, estimated cycles / policy flash: generic 18287 cycles / 2762 B, " in lines[7]
    assert lines[8] == ("shipped kernel on cortex-m4f: policy flash 4068 B (its code and data in the linked image), "
                        "890 instructions (emulated), est. 1437 cycles (8.6 us at 168 MHz, the cycle model's clock), "
                        "stack 140 B (bpd_policy_run and its callees)")
    # the shipped kernel's own scratch beside the generic kernel's activation RAM of line 3 (an integer kernel works
    # on its stack: 4 B where the generic kernel's two buffers take 256 B; the firmware build's policy RAM)
    assert format_report(r | {"kernel": k | {"scratch_bytes": 4}}).splitlines()[8] == lines[8] + (
        ", scratch 4 B (the caller's float scratch[BPD_SCRATCH_FLOATS])")
    assert lines[-1] == "return over 1 episode: c 5.0"
    unmeasured = k | {"candidates": {"compact": {}}, "measured_on": None}
    assert not [x for x in format_report(r | {"kernel": unmeasured}).splitlines() if x.startswith("shipped")]


def test_report_says_what_the_c_kernels_parity_tolerance_is():
    """The parity line gives the C kernel's own tolerance where it is looser than the float reference's, and why: the
    integer kernel's --int-budget (its bits checked against its integer model), or a float kernel's tanh budget."""
    from export.report import format_report

    r = {"layers": [], "totals": {"flash_bytes": 0, "ram_activation_bytes": 0, "macs": 0},
         "dense_teacher": {"flash_bytes": 1, "ram_activation_bytes": 1, "macs": 1, "widths": [1]},
         "flash_vs_teacher": 0.0, "macs_vs_teacher": 0.0,
         "parity": {"tolerance": 3e-5, "c_tolerance": 3e-5, "states": 10, "c_vs_torch": 1e-6}}

    def parity(**kw) -> str:
        return next(x for x in format_report(r | {"parity": r["parity"] | kw}).splitlines() if x.startswith("parity"))

    assert parity().endswith("c_vs_torch 1.00e-06 (tolerance 3e-05; 10 states)")
    assert "; the C kernel's 0.04, the integer kernel's --int-budget share of the action range (bit for bit its " \
           "integer model); 10 states)" in parity(c_tolerance=0.04, c_check="integer kernel: ...")
    assert "; the C kernel's 0.001, its tanh's budget; 10 states)" in parity(c_tolerance=1e-3)
    # an integer kernel whose tanh budget, set above its --int-budget, is what its tolerance is: named as such
    assert "; the C kernel's 0.1, its tanh's budget; 10 states)" in parity(c_tolerance=0.1, c_check="integer kernel",
                                                                         c_tolerance_by="tanh_budget")


def test_auto_does_not_build_what_cannot_fit():
    from export.kernels import too_big

    assert too_big("generated", 5000, FLASH_BUDGET) and not too_big("compact", 5000, FLASH_BUDGET)
    assert too_big("compact", 7000, FLASH_BUDGET) and not too_big("generic", 10**6, FLASH_BUDGET)


def test_compact_kernel_reaches_rows_beyond_the_near_offsets(tmp_path):
    """300 outputs: rows past 255 are addressed through r12 in the assembly (the C build is checked on the
    host here, the assembly under the emulator where the tools are)."""
    net = _net([6, 300, 2], 0.3)
    pol = _compact(net, tmp_path / "k")
    obs = np.random.default_rng(2).normal(0, 1, (50, 6)).astype(np.float32)
    assert np.abs(pol.act(obs) - net.act(obs)).max() < 2e-5
    if shutil.which("arm-none-eabi-gcc"):
        pytest.importorskip("unicorn")
        from firmware_host.measure.bench import kernel_cost

        assert kernel_cost(tmp_path / "k", "cortex-m4f")["max_abs_error_vs_host_c"] < 1e-5


def test_default_export_ships_the_measured_choice(tiny_pipeline, tmp_path):
    """`bpd export` without --kernel: every kernel built and checked, the rule's choice in the export,
    the candidates' figures in the report."""
    import json

    from tests.conftest import run_bpd

    out = tmp_path / "exp"
    run_bpd("export", str(tiny_pipeline / "run"), "--out", str(out), "--episodes", "0", "--parity-samples", "500")
    rep = json.loads((out / "export_report.json").read_text())
    k = rep["kernel"]
    assert k["requested"] == "auto"
    assert {"generic", "compact", "generated"} <= set(k["candidates"]) | set(k["skipped"])
    assert set(k["candidates"]) | set(k["skipped"]) <= {"generic", "compact", "generated", "compact-table",
                                                        "generated-table", "integer", "integer-interp",
                                                        "integer-table"}
    assert json.loads((out / "export.json").read_text())["kernel"] == k["kind"] == k["variant"].removesuffix("-table")
    if shutil.which("arm-none-eabi-gcc"):
        costs = {n: c["cost"] for n, c in k["candidates"].items()}
        assert all(c and c["cycles"] > 0 and c["flash_bytes"] > 0 for c in costs.values())
        floats = {n: c for n, c in costs.items() if not n.startswith("integer")}
        # with --episodes 0 the integer kernel cannot show that it keeps the return: a float kernel ships
        assert k["variant"] == choose(floats, k["flash_budget"])[0]
        weighed = [n for n in ("integer", "integer-interp", "integer-table") if "--int-flash-ratio" not in
                   (k["candidates"].get(n) or {}).get("verdict", "--int-flash-ratio")]
        assert weighed and all(k["candidates"][n]["verdict"] in (
            "no closed-loop check with --episodes 0", "not cheaper than the float kernel the rule picks",
            "within 2 % of the cycles of the float kernel the rule picks, which takes less flash")
            or k["candidates"][n]["verdict"].startswith("the same integers as ") for n in weighed)
        assert not any(k["candidates"][n]["verdict"].startswith("the rule picks") for n in weighed)  # a float ships
    assert rep["parity"]["pass"]


def test_default_export_ships_the_integer_kernel_where_it_wins_and_keeps_the_return(tiny_pipeline, tmp_path):
    """With closed-loop episodes, auto weighs the integer kernel too: where it is cheaper than the float kernel
    the rule picks, within --int-budget and keeping 99 % of that kernel's return, it ships, installed as the
    export's kernel (the host build equals its numpy model, the export verifies); with --int-budget 0 it
    cannot. --kernel integer forces it."""
    import json

    from export.collapse import collapse
    from export.export import load_source
    from export.fixed_point import IntPolicy, quantise
    from export.verify import verify_export
    from tests.conftest import run_bpd
    from training.collect import load_dataset

    if not shutil.which("arm-none-eabi-gcc"):
        pytest.skip("arm-none-eabi-gcc not installed: auto cannot measure the kernels")
    pytest.importorskip("unicorn")
    out = tmp_path / "exp"
    run_bpd("export", str(tiny_pipeline / "run"), "--out", str(out), "--episodes", "2", "--parity-samples", "300")
    k = json.loads((out / "export_report.json").read_text())["kernel"]
    cands = k["candidates"]
    floats = {n: c["cost"] for n, c in cands.items() if not n.startswith("integer")}
    best_float = choose(floats, k["flash_budget"])[0]
    # the integer form auto weighs: the tanh lookup, else the interpolating form, else the table form, within
    # --int-flash-ratio
    w = next(n for n in ("integer", "integer-interp", "integer-table")
             if n in cands and "--int-flash-ratio" not in cands[n]["verdict"])
    assert cands[w]["cost"]["cycles"] < floats[best_float]["cycles"]  # SMLAD: fewer cycles than float
    assert cands[w]["max_error_vs_action_range"] <= 0.02
    verdict = cands[w]["verdict"]
    n = re.search(r"return over (\d+) paired episodes", verdict)
    assert n and int(n[1]) % 2 == 0  # whole batches of --episodes 2
    assert (k["kind"] == "integer") == ("keeps" in verdict)
    if k["kind"] == "integer":
        assert json.loads((out / "export.json").read_text())["kernel"] == "integer"
        verify_export(out)
        net = collapse(load_source(tiny_pipeline / "run").policy)
        q = quantise(net, load_dataset(str(tiny_pipeline / "dataset.npz"), net.obs_dim).observations, "test")
        obs = np.random.default_rng(3).normal(0, 1, (64, net.obs_dim)).astype(np.float32)
        assert np.array_equal(CPolicy(out).act(obs).view(np.uint32), IntPolicy(q).act(obs).view(np.uint32))
    strict = tmp_path / "strict"
    run_bpd("export", str(tiny_pipeline / "run"), "--out", str(strict), "--episodes", "2", "--parity-samples", "300",
            "--int-budget", "0")
    k0 = json.loads((strict / "export_report.json").read_text())["kernel"]
    assert k0["kind"] != "integer" and "over --int-budget 0 %" in k0["candidates"][w]["verdict"]
    forced = tmp_path / "forced"
    run_bpd("export", str(tiny_pipeline / "run"), "--out", str(forced), "--episodes", "0", "--parity-samples", "300",
            "--kernel", "integer")
    assert json.loads((forced / "export.json").read_text())["kernel"] == "integer"
    assert json.loads((forced / "export_report.json").read_text())["parity"]["pass"]


def _fake_meter(integer_vs_host: float):
    """A meter that makes the integer kernel ten times cheaper than any float kernel, its emulated build
    differing from the host build by integer_vs_host."""
    def meter(d):
        integer = d.name == "integer"
        return {"cycles": 100.0 if integer else 1000.0, "flash_bytes": 1000, "instructions": 100,
                "max_abs_error_vs_host_c": integer_vs_host if integer else 0.0}
    return meter


def test_a_forced_kernel_is_named_and_measured_as_auto_measures_its_kernels(tiny_pipeline, tmp_path):
    """`--kernel generic` (or any kernel by name) printed no kernel line and no cost: the summary said neither which
    kernel shipped nor what it costs on the part. Now the forced kernel is measured by the same meter as auto's
    candidates, and its line and cost are printed; without a meter the line still names it."""
    from export.export import ExportConfig, run_export
    from export.report import format_report

    cost = {"target": "cortex-m4f", "cycles": 840.0, "flash_bytes": 1234, "instructions": 500, "us": 5.0,
            "stack_bytes": 96, "max_abs_error_vs_host_c": 0.0}
    seen = []
    for kernel in ("generic", "compact"):
        rep = run_export(ExportConfig(source=str(tiny_pipeline / "run"), out=str(tmp_path / kernel), episodes=0,
                                      parity_samples=300, kernel=kernel), meter=lambda d: seen.append(d) or cost)
        k = rep["kernel"]
        assert k["rule"] == "forced by --kernel" and k["measured_on"] == "cortex-m4f"
        assert k["candidates"] == {kernel: {"cost": cost}}
        floats = int(re.search(r"#define BPD_SCRATCH_FLOATS (\d+)", (tmp_path / kernel / "policy_weights.h")
                               .read_text())[1])
        assert k["scratch_bytes"] == 4 * floats
        if kernel == "generic":  # the generic kernel's own: the report's activation RAM
            assert k["scratch_bytes"] == rep["totals"]["ram_activation_bytes"]
        lines = format_report(rep).splitlines()
        assert f"kernel {kernel}: forced by --kernel (cortex-m4f, estimated cycles / policy flash: {kernel} 840 " \
               "cycles / 1234 B)" in lines
        assert ("shipped kernel on cortex-m4f: policy flash 1234 B (its code and data in the linked image), 500 "
                "instructions (emulated), est. 840 cycles (5.0 us at 168 MHz, the cycle model's clock), stack 96 B "
                "(bpd_policy_run and its callees), scratch {} B (the caller's float scratch[BPD_SCRATCH_FLOATS])"
                .format(k["scratch_bytes"])) in lines
    assert len(seen) == 2  # the shipped kernel alone, once
    rep = run_export(ExportConfig(source=str(tiny_pipeline / "run"), out=str(tmp_path / "none"), episodes=0,
                                  parity_samples=300, kernel="generic"))
    assert "kernel generic: forced by --kernel (not measured: no arm-none-eabi-gcc or emulator)" \
        in format_report(rep).splitlines()


def test_auto_ships_the_integer_kernel_only_where_its_emulated_build_gives_the_host_builds_bits(tiny_pipeline,
                                                                                               tmp_path):
    """The integer kernel is checked bit-exact on the host build (scalar C); the core runs the DSP assembly,
    which the meter ran: where the two differ, auto does not ship it, however cheap."""
    import json

    from export.export import ExportConfig, run_export

    for err, ships in ((0.0, True), (1e-3, False)):
        out = tmp_path / f"exp{err}"
        run_export(ExportConfig(source=str(tiny_pipeline / "run"), out=str(out), episodes=1, parity_samples=300),
                   meter=_fake_meter(err))
        k = json.loads((out / "export_report.json").read_text())["kernel"]
        assert (k["kind"] == "integer") == ships, k["candidates"]["integer"]["verdict"]
        if not ships:
            assert "differs from the checked host build" in k["candidates"]["integer"]["verdict"]


def test_an_integer_form_over_the_flash_budget_itself_is_said_to_be_over_the_budget(tiny_pipeline, tmp_path):
    """Known answer: integer forms of 3,000 B beside a generic kernel of 2,000 B, their limit 2,500 B either way.
    Under a 2,500 B budget (--int-flash-ratio 1.5: 3,000 B) the budget sets it, and the verdict put it down to the
    ratio; under the default budget with --int-flash-ratio 1.25 the ratio does."""
    from export.export import ExportConfig, run_export

    def meter(d):
        integer = d.name.startswith("integer")
        return {"cycles": 100.0 if integer else 1000.0, "flash_bytes": 3000 if integer else 2000, "instructions": 100,
                "max_abs_error_vs_host_c": 0.0}

    for budget, ratio, by in ((2500, 1.5, "--flash-budget"),
                              (49152, 1.25, "--int-flash-ratio 1.25 times the generic kernel's flash, within "
                                            "--flash-budget")):
        k = run_export(ExportConfig(source=str(tiny_pipeline / "run"), out=str(tmp_path / str(budget)), episodes=0,
                                    parity_samples=300, flash_budget=budget, int_flash_ratio=ratio),
                       meter=meter)["kernel"]
        assert k["int_flash_limit"] == 2500
        assert k["candidates"]["integer"]["verdict"] == f"over the integer kernel's flash limit (2500 B: {by})"


def test_the_kernel_is_chosen_on_episodes_the_export_does_not_report(tiny_pipeline, tmp_path, monkeypatch):
    """The closed-loop check that lets the integer kernel ship is a choice: its episodes are off the
    reporting seeds (training/envs.py) and off the episodes of the export's own `returns`."""
    import training.envs
    from export.export import ExportConfig, run_export
    from export.kernels import CHECK_BATCHES

    seen: list[tuple[int, int]] = []
    evaluate = training.envs.evaluate

    def recording(env_id, policy, episodes, seed=0):
        seen.append((seed, seed + episodes))
        return evaluate(env_id, policy, episodes, seed)

    monkeypatch.setattr(training.envs, "evaluate", recording)
    rep = run_export(ExportConfig(source=str(tiny_pipeline / "run"), out=str(tmp_path / "exp"), episodes=2,
                                  parity_samples=300), meter=_fake_meter(0.0))
    assert rep["kernel"]["kind"] == "integer" and "returns" in rep
    choice, report = seen[:-2], seen[-2:]  # integer and float kernel batch by batch, then the reported forms
    assert len(choice) % 2 == 0 and 2 <= len(choice) <= 2 * CHECK_BATCHES and len(report) == 2
    assert [lo for lo, _ in choice[::2]] == [lo for lo, _ in choice[1::2]]  # paired: the same starts for both
    assert all(lo > 99_999 for lo, _ in choice)  # the reporting seeds are 0 .. 99_999
    assert all(hi <= lo2 or hi2 <= lo for lo, hi in choice for lo2, hi2 in report)


def test_return_check_decides_by_the_paired_interval_and_at_the_last_batch_by_the_mean():
    """Known answers: float returns 100 each (margin 1); differences d with mean m and standard error
    se = std(d, ddof=1) / sqrt(n); the interval is m +- 2 se (z=2 here); no early verdict before `least`; at the
    last batch what the interval does not show to lose more than 1 % ships."""
    from export.kernels import CHECK_MIN, return_check

    floats = [100.0] * 4
    assert return_check([100.0] * 4, floats, z=2, least=4)[0] is True  # no spread: the mean 0 is within 1 %
    assert return_check([98.0] * 4, floats, z=2, least=4)[0] is False  # no spread, mean -2: below
    assert return_check([100.0] * 4, floats, z=2, least=5) == (None, "")  # too few pairs to stop early
    assert return_check([100.0] * (CHECK_MIN - 1), [100.0] * (CHECK_MIN - 1)) == (None, "")
    assert return_check([100.0] * CHECK_MIN, [100.0] * CHECK_MIN)[0] is True
    # d = -0.5 +- 3: std(ddof=1) of [-3.5, 2.5, -3.5, 2.5] is sqrt(12), se sqrt(3), interval -0.5 +- 3.46
    ints = [96.5, 102.5, 96.5, 102.5]
    assert return_check(ints, floats, z=2, least=4) == (None, "")  # straddles -1: more episodes wanted
    keep, why = return_check(ints, floats, final=True, z=2)  # at the last batch, not shown to lose: keeps
    assert keep is True and "over 4 paired episodes" in why and "-0.5 +- 3.5" in why and "does not show" in why
    # mean -1.5 +- 4.04 (std(ddof=1) of [-5, 2, -5, 2] is sqrt(49/3)): below the margin but not shown to be: keeps
    assert return_check([95.0, 102.0, 95.0, 102.0], floats, final=True, z=2)[0] is True
    # mean -3 +- 1.15 (std of [-4, -2, -4, -2] is sqrt(4/3)): the whole interval below -1: misses, final or not
    assert return_check([96.0, 98.0, 96.0, 98.0], floats, final=True, z=2)[0] is False
    assert return_check([96.0, 98.0, 96.0, 98.0], floats, z=2, least=4)[0] is False
    assert return_check([100.0], [100.0], least=1)[0] is None  # one episode has no spread to judge by
    assert return_check([100.0], [100.0], final=True)[0] is True
    with pytest.raises(ValueError):
        return_check([1.0, 2.0], [1.0])


def test_bench_markdown_shows_a_dash_where_a_runtime_s_stack_was_not_measured():
    """A runtime whose stack the compiler leaves unbounded has stack_bytes None: the table shows '-', not None."""
    from firmware_host.measure.bench_report import markdown

    run = {"instructions_median": 100, "us_estimate": 1.0, "flash_bytes": 200, "ram_bytes": 30}
    res = {"targets": ["cortex-m4f"], "arithmetic_floor": {"instructions": 50, "macs": 40, "bias_adds": 4,
                                                           "activations": 4, "output_ops": 2},
           "networks": {"student": {"widths": [3, 4, 1], "runtimes": {
               "emx-onnx-cgen": {"host": {"median_ns": 10.0}, "cortex-m4f": run | {"stack_bytes": None}},
               "bpd": {"host": {"median_ns": 9.0}, "cortex-m4f": run | {"stack_bytes": 64}}}}}}
    rows = {line.split(" | ")[1]: line for line in markdown(res).splitlines() if line.startswith("| student")}
    assert rows["emx-onnx-cgen"].endswith("| 100 / - / 1.0 / 200 / 30 / - |")  # no cycles measured: '-' too
    assert rows["bpd"].endswith("| 100 / - / 1.0 / 200 / 30 / 64 |")
    rows = {line.split(" | ")[1]: line for line in markdown({**res, "networks": {"student": {
        "widths": [3, 4, 1], "runtimes": {"bpd": {"host": {"median_ns": 9.0}, "cortex-m4f": run | {
            "stack_bytes": 64, "cycles_estimate": 168}}}}}}).splitlines() if line.startswith("| student")}
    assert rows["bpd"].endswith("| 100 / 168 / 1.0 / 200 / 30 / 64 |")


def _meter_preferring(order: list[str]):
    """A meter whose kernels cost fewer cycles the earlier order names them (the integer forms the cheapest)."""
    def meter(d):
        rank = 0 if d.name.startswith("integer") else 1 + order.index(d.name) if d.name in order else 50
        return {"cycles": 100.0 * (rank + 1), "flash_bytes": 1000, "instructions": 100, "max_abs_error_vs_host_c": 0.0}
    return meter


def _wide_relu_teacher(path, scale):
    """A ReLU teacher of Hopper's sizes whose weights are `scale` times a standard normal draw."""
    from training.teacher import Teacher

    rng = np.random.default_rng(3)
    dims = [11, 16, 16, 3]
    w = [(rng.normal(size=(dims[i + 1], dims[i])) * scale).astype(np.float32) for i in range(3)]
    b = [(rng.normal(size=dims[i + 1]) * scale).astype(np.float32) for i in range(3)]
    Teacher(w, b, "relu", "clip", np.zeros(11, np.float32), np.ones(11, np.float32), -np.ones(3, np.float32),
            np.ones(3, np.float32), env_id="Hopper-v5", algo="hand").save(path)
    return path


def test_auto_ships_a_float_kernel_where_the_weights_are_past_the_integer_kernels_range(tmp_path):
    """Weights of 1e4 after two ReLU layers are past int16 weights with int32 sums: auto leaves the integer kernel
    out and says why (it used to stop the export); asked for by name, it is refused in that one line."""
    from bpd.errors import BpdError
    from export.export import ExportConfig, run_export

    src = _wide_relu_teacher(tmp_path / "wide.npz", 1e4)
    rep = run_export(ExportConfig(source=str(src), out=str(tmp_path / "exp"), episodes=0, parity_samples=300),
                     meter=_meter_preferring(["compact", "generated", "generic"]))
    k = rep["kernel"]
    assert k["kind"] == "compact" and rep["parity"]["pass"]
    assert "out of the integer kernel's range" in k["skipped"]["integer"]
    assert k["skipped"]["integer-table"] == k["skipped"]["integer"] and "integer-interp" not in k["skipped"]  # ReLU
    with pytest.raises(BpdError, match="out of the integer kernel's range"):
        run_export(ExportConfig(source=str(src), out=str(tmp_path / "forced"), episodes=0, parity_samples=300,
                                kernel="integer"))


def test_auto_gives_a_float_kernel_over_the_parity_tolerance_way_to_the_next(tmp_path, monkeypatch):
    """The rule's choice is checked against torch before it ships: one over the parity tolerance (here the
    compact kernel, held to a tolerance of zero, which its float32 sums cannot meet) is left out with its
    measured error, and the rule's next choice ships."""
    import export.export as ex

    real = ex._over_parity
    monkeypatch.setattr(ex, "_over_parity", lambda d, obs, ref, tol: real(d, obs, ref, 0.0 if d.name == "compact"
                                                                           else tol))
    src = _wide_relu_teacher(tmp_path / "plain.npz", 1.0)
    rep = ex.run_export(ex.ExportConfig(source=str(src), out=str(tmp_path / "exp"), episodes=0, parity_samples=300),
                        meter=_meter_preferring(["compact", "generated", "generic"]))
    k = rep["kernel"]
    assert k["kind"] == "generated" and rep["parity"]["pass"]
    assert re.fullmatch(r"not shipped: c_vs_torch \S+, over the parity tolerance 0\.00e\+00",
                        k["candidates"]["compact"]["verdict"])
    assert k["rule"].endswith("(left out, over the parity tolerance on this network: compact)")


def test_a_kernel_whose_build_for_the_core_is_off_its_host_build_does_not_ship(tmp_path):
    """The parity check runs each kernel's host build; the core runs its build for the core (the compact kernel's
    assembly on Cortex-M4F), which the meter runs and compares with the host build. That difference was recorded and
    not checked: a float kernel 1e-3 off its host build (a tolerance of 3e-5) shipped, by auto or forced. Now auto
    leaves it out for the rule's next choice, and a kernel forced by --kernel so off (an integer kernel off by any
    bit) stops the export in one line."""
    from bpd.errors import BpdError
    from export.export import ExportConfig, run_export

    src = _wide_relu_teacher(tmp_path / "plain.npz", 1.0)
    prefer = _meter_preferring(["compact", "generated", "generic"])

    def meter(d, err=1e-3):
        return prefer(d) | ({"max_abs_error_vs_host_c": err} if d.name == "compact" else {})

    rep = run_export(ExportConfig(source=str(src), out=str(tmp_path / "exp"), episodes=0, parity_samples=300),
                     meter=meter)
    k = rep["kernel"]
    assert k["kind"] == "generated" and rep["parity"]["pass"]
    assert k["candidates"]["compact"]["verdict"] == ("not shipped: its emulated cortex-m4f build differs from the "
                                                     "checked host build (max abs 1.00e-03, over {:.2e})"
                                                     .format(rep["parity"]["tolerance"]))
    assert k["rule"].endswith("(left out, off its host build: compact)")
    for kernel, err in (("compact", 1e-3), ("integer", 1e-7)):
        with pytest.raises(BpdError, match=f"--kernel {kernel}: its emulated cortex-m4f build differs from the "
                                           "checked host build"):
            run_export(ExportConfig(source=str(src), out=str(tmp_path / kernel), episodes=0, parity_samples=300,
                                    kernel=kernel), meter=lambda d, e=err: prefer(d) | {"max_abs_error_vs_host_c": e})
        assert not (tmp_path / kernel).exists()


def test_an_export_over_its_flash_budget_says_so_on_stderr():
    """Known answer: a teacher exported as is shipped its least-flash kernel, 270,169 B against the 49,152 B budget,
    exit 0, the rule's words inside the kernel line the only sign; the command now ends with a note naming both
    figures and the ways to a smaller student. A kernel within the budget, or none measured, says nothing."""
    from firmware_host.cli import over_budget_note

    def report(flash):
        cost = {"flash_bytes": flash, "cycles": 1.0}
        return {"kernel": {"kind": "generic", "variant": "generic", "candidates": {"generic": {"cost": cost}}}}

    note = over_budget_note(report(270169), 49152)
    assert note == ("bpd: note: the shipped kernel's policy flash, 270169 B, is over --flash-budget (49152 B): no "
                    "kernel of this student fits the part that budget describes; a smaller student: bpd distill "
                    "--prune-to-cycles, or bpd student select --cost flash")
    assert over_budget_note(report(49152), 49152) is None and over_budget_note({"kernel": {}}, 10) is None


def test_a_forced_kernel_over_the_flash_budget_is_not_said_to_be_the_only_one():
    """Known answer: `bpd export --kernel compact` of a student whose compact kernel takes 60,000 B (the forced kernel's
    cost is recorded as auto's) ended in 'no kernel of this student fits' against the 49,152 B budget, which a forced
    kernel is never held to and which the generic or integer kernel of that student may well meet: no note there."""
    from firmware_host.cli import over_budget_note

    k = {"kind": "compact", "variant": "compact", "requested": "compact", "rule": "forced by --kernel",
         "candidates": {"compact": {"cost": {"flash_bytes": 60000, "cycles": 1.0}}}}
    assert over_budget_note({"kernel": k}, 49152) is None
    assert over_budget_note({"kernel": k | {"requested": "auto"}}, 49152).startswith("bpd: note: the shipped kernel")
    # the integer-table kernel forced is fitted to the budget: `--kernel integer-table --flash-budget 100` shipped its
    # least, 2,359 B, without a word
    t = {"kind": "integer", "variant": "integer-table", "requested": "integer-table", "rule": "forced by --kernel",
         "candidates": {"integer-table": {"cost": {"flash_bytes": 2359, "cycles": 1696.0}}}}
    assert over_budget_note({"kernel": t}, 100) == (
        "bpd: note: the shipped kernel's policy flash, 2359 B, is over --flash-budget (100 B): the least flash "
        "--kernel integer-table makes for this student; a smaller student: bpd distill --prune-to-cycles, or bpd "
        "student select --cost flash")
    assert over_budget_note({"kernel": t}, 2359) is None
