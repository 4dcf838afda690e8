"""What `bpd export` prints: its report (export_report.json) as a few lines, the layers, the sizes against the
teacher, the parity check and which kernel ships and why."""

from __future__ import annotations


def format_report(r: dict) -> str:
    lines = ["layer  before      after       nnz    storage  values B  index B  bias B",
             "-" * 72]
    for L in r["layers"]:
        lines.append(f"{L['layer']:>5}  {'x'.join(map(str, L['shape_before'])):<10}  "
                     f"{'x'.join(map(str, L['shape_after'])):<10}  {L['nnz']:>5}  {L['storage']:>7}  "
                     f"{L['value_bytes']:>8}  {L['index_bytes']:>7}  {L['bias_bytes']:>6}")
    t, d = r["totals"], r["dense_teacher"]
    lines += ["-" * 72,
              f"student: weights {t['flash_bytes']} B and activation RAM {t['ram_activation_bytes']} B as the "
              "generic kernel stores them (values, indices, biases, the output's constants and any input offset; "
              f"two buffers of the widest layer), {t['macs']} MACs/inference",
              (f"dense teacher {'x'.join(map(str, d['widths']))}" if "note" not in d else
               f"dense, the student's own shape {'x'.join(map(str, d['widths']))} (no teacher found: --teacher "
               "FILE compares with it)")
              + f": weights {d['flash_bytes']} B, activation RAM {d['ram_activation_bytes']} B, {d['macs']} MACs",
              f"weights {100 * r['flash_vs_teacher']:.2f} % of the "
              + ("teacher's" if "note" not in d else "dense network's")
              + f", MACs {100 * r['macs_vs_teacher']:.2f} %",
              "parity (max abs): " + ", ".join(f"{k} {v:.2e}" for k, v in r["parity"].items() if "_vs_" in k)
              + f" (tolerance {r['parity']['tolerance']:g}"
              + (f"; the C kernel's {r['parity']['c_tolerance']:g}, "
                 + ("the integer kernel's --int-budget share of the action range (bit for bit its integer model)"
                    if r["parity"].get("c_tolerance_by", "int_budget" if "c_check" in r["parity"] else None)
                    == "int_budget" else "its tanh's budget")
                 if r["parity"].get("c_tolerance", 0) > r["parity"]["tolerance"] else "")
              + f"; {r['parity']['states']} states)"]
    if "no dataset found" in str(r["parity"].get("origin", "")):  # the report alone said so before
        lines.append("note: no dataset found (the run's is gone, or none given): the parity states are uniform within "
                     "the observations' mean +- 3 std, and an integer kernel is calibrated on them; --dataset FILE "
                     "checks on the states the policy meets")
    if "int8" in r:
        lines.append(f"int8 (OUT/int8, a comparison: the generic kernel's C with int8 weights): flash "
                     f"{r['int8']['totals']['flash_bytes']} B, max abs error "
                     f"{r['int8']['max_abs_error_vs_torch']:.2e}")
    k = r.get("kernel", {})
    if k.get("kind") in ("generated", "compact"):
        lines.append(f"{k['kind']} kernel: tanh {k['tanh']} (max abs error {k['tanh_max_abs_error']:.1e}, "
                     f"cheapest within the budget {k['tanh_budget']:g} on actions)")
    if k.get("candidates"):
        limit = k.get("int_flash_limit")  # an integer form over it: one the rule could not take for its flash
        budget = k.get("flash_budget")  # any kernel over it: one the rule could not take while another fits
        costs = [f"{name} {c['cost']['cycles']:.0f} cycles / {c['cost']['flash_bytes']} B"
                 + (f" over the {limit} B integer limit" if name.startswith("integer") and limit
                    and c["cost"]["flash_bytes"] > limit else
                    f" over the {budget} B budget" if budget and c["cost"]["flash_bytes"] > budget else "")
                 for name, c in k["candidates"].items() if c.get("cost")]
        lines.append(f"kernel {k.get('variant', k['kind'])}: {k['rule']}"
                     + (f" ({k['measured_on']}, estimated cycles / policy flash: {', '.join(costs)})" if costs else ""))
        over = [n for n, c in k["candidates"].items() if n.startswith("integer") and limit
                and (c.get("cost") or {}).get("flash_bytes", 0) > limit]
        gen, ratio = (k["candidates"].get("generic", {}).get("cost") or {}).get("flash_bytes"), k.get("int_flash_ratio")
        if over and ratio and gen and (budget is None or limit < budget):  # a default the rule's line leaves unnamed
            lines.append(f"  the integer limit, {limit} B: --int-flash-ratio {ratio:g} times the generic kernel's "
                         f"{gen} B (--int-flash-ratio 0: --flash-budget alone)")
        shipped = (k["candidates"].get(k.get("variant", k["kind"])) or {}).get("cost") or {}
        # the figure to hold against a part's flash, and what it costs
        if shipped.get("flash_bytes") is not None and shipped.get("cycles") is not None:
            lines.append(f"shipped kernel on {shipped.get('target', k.get('measured_on'))}: policy flash "
                         f"{shipped['flash_bytes']} B (its code and data in the linked image), "
                         + (f"{shipped['instructions']} instructions (emulated), " if "instructions" in shipped else "")
                         + f"est. {shipped['cycles']:.0f} cycles"
                         + (f" ({shipped['us']:.1f} us at {shipped['cycles'] / shipped['us']:.0f} MHz, the cycle "
                            "model's clock)" if shipped.get("us") else "")
                         + (f", stack {shipped['stack_bytes']} B (bpd_policy_run and its callees)"
                            if shipped.get("stack_bytes") is not None else "")
                         + (f", scratch {k['scratch_bytes']} B (the caller's float scratch[BPD_SCRATCH_FLOATS])"
                            if k.get("scratch_bytes") is not None else ""))
        for name, c in k["candidates"].items():  # a cheaper integer form left out for a reason the rule does not say
            if (name.startswith("integer") and name != k.get("variant", k["kind"]) and c.get("cost")
                    and shipped.get("cycles") and c["cost"]["cycles"] < shipped["cycles"] and c.get("verdict")
                    and "flash limit" not in c["verdict"] and not c["verdict"].startswith("the rule picks")):
                lines.append(f"  {name} ({c['cost']['cycles']:.0f} cycles) not shipped: {c['verdict']}")
    elif k.get("rule"):  # a forced kernel, not measured (no cross compiler or emulator)
        lines.append(f"kernel {k.get('variant', k['kind'])}: {k['rule']} (not measured: no arm-none-eabi-gcc or "
                     "emulator)")
    if "int" in r:
        lines.append(f"integer kernel ({r['int']['dir']}/ in the export): max abs error "
                     f"{r['int']['max_abs_error_vs_float']:.2e} "
                     f"against the float student ({100 * r['int']['max_error_vs_action_range']:.3f} % of the action "
                     f"range), calibrated on {r['int']['calibration']['origin']}")
    if r.get("package"):
        lines.append(f"package for {', '.join(r['package']['formats'])}: {r['package']['dir']}/ in the export "
                     f"(library {r['package']['name']} {r['package']['version']}, examples in "
                     f"{r['package']['dir']}/examples/)")
    if "returns" in r:
        n = r["returns"]["episodes"]
        lines.append(f"return over {n:d} episode{'' if n == 1 else 's'}: " + ", ".join(
            f"{k} {v['return_mean']:.1f}" for k, v in r["returns"].items() if k != "episodes"))
    return "\n".join(lines)
