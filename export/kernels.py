"""Which C kernel an export ships: built, parity-checked and, where a meter is at hand, chosen by cost.

Three float kernels compute the same function (the two straight-line ones each with the cheapest rational
tanh within the budget, and with the table tanh, a cubic per interval of 1/16: no divide, 2 kB):
- generic:   the hand-written layer walker (policy.c) over dense or CSR arrays; the least flash;
- compact:   straight-line code over a table of weights (compact.py); on Cortex-M4F/M7 its layers are
             assembly with one VFMA per weight and the weights loaded 15 at a time;
- generated: straight-line code with every weight a literal (codegen.py); the most flash.

`bpd export` (`--kernel auto`, the default) builds all three, checks each against torch on the parity
states, measures each on an emulated Cortex-M4F when the tools are present (a `KernelMeter`: the
cycles the instruction mix costs by firmware_host/measure/cycle_model.py, and the flash of the policy's own
code and data in the linked image), and ships the rule's choice:

    among the kernels whose policy flash is within --flash-budget (default 48 kB: a 64 kB part less
    16 kB for the firmware core, wire codec, board layer and vectors), those within LEVEL (2 %) of the
    fewest estimated Cortex-M4F cycles count as level (the cycle model is good for ratios to about
    +-20 %, so 2 % buys nothing measurable), and of those the one with the least flash ships; the
    least flash when none fits.

The integer kernel (fixed_point.py: on Cortex-M4/M7 one SMLAD per int16 weight pair) is a candidate
too where the export has a meter, under three more conditions: the meter's emulated build (the DSP
assembly) gives the bits of the host build checked against the numpy model, its largest action error
against the float student is within --int-budget (default 2 %) of the action range, and, checked only
when it would win, its closed-loop return keeps KEEP_RETURN (99 %) of the return of the float kernel the
rule picks among the others (`return_check`: paired episodes, both kernels from the same starts, in
batches of --episodes, on seeds of their own, not those the export reports; it stops as soon as the
interval of the mean difference lies wholly above or wholly below the 1 % margin, and after
CHECK_BATCHES batches ships it unless the interval shows a loss beyond the margin. A task whose
episodes sometimes fail (HalfCheetah's flips) spreads its episodes' returns by about a tenth of their
mean, so 30 episodes cannot tell a 1 % loss from luck; benchmarks/results/cost/cost.md compares the
two kernels over 300). It is calibrated on the dataset's observations (the run's, or --dataset), else on the
parity states. Where the integer kernel is over the flash budget, its table form (int_table.py: the same
integers, the weights in tables walked by a few hundred bytes of assembly, about 5 bytes a weight pair)
is built fitted to the budget, layers becoming straight-line code where the room allows, and weighed
with the same checks (one closed-loop check serves both: they give the same bits). The straight-line
integer kernel is built with tanh by one lookup in its 4 kB table (`integer`) and, on a tanh network,
interpolated between 128 knots in 512 B (`integer-interp`: the same integers, four instructions a tanh
unit more). Every integer form is held to INT_FLASH_RATIO (`--int-flash-ratio`) times the generic
kernel's flash as well as to the budget: the lookup where it fits, else the interpolating form, else
the table form fitted to that limit.

The rule's float choice is held to the parity tolerance before it ships: one over it (large weights that cancel,
whose float32 sums round otherwise than torch's), or whose build for the core (the meter's run) is further than that
from its host build (`off_host`), is left out and the rule's next choice taken, the generic kernel last; the
integer forms are left out where the weights are past int16 weights with int32 sums (`IntRange`).
Every candidate's figures and the rule go into export_report.json under `kernel`. Without a meter
(no arm-none-eabi-gcc or no emulator), auto ships the compact kernel, the kernel the project's own
measurements favour on every student it measured (benchmarks/results/kernels.md), and says so.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bpd.errors import BpdError
from export.codegen import generate_kernel, select_tanh, tanh_forms
from export.collapse import CollapsedNet
from export.compact import generate_compact

KINDS = ("generic", "compact", "generated")  # the float kernels
CHOICES = ("auto", *KINDS, "integer", "integer-interp", "integer-table")
INT_BUDGET = 0.02  # the integer kernel's largest action error against the float student, a share of the range
KEEP_RETURN = 0.99  # and the share of the float kernel's closed-loop return it must keep to ship by auto
CHECK_BATCHES = 10  # the closed-loop check's most batches of --episodes paired episodes
CHECK_MIN = 30  # paired episodes before it may stop early (fewer rarely show a task's rare failures)
# its interval on the mean paired difference, mean +- CHECK_Z standard errors: 2.5 rather than 2 because it looks
# up to CHECK_BATCHES times (a Pocock-style bound keeps the chance of a wrong early verdict near 5 %)
CHECK_Z = 2.5
FLASH_BUDGET = 48 * 1024
# auto: the integer kernel's forms only within this multiple of the generic kernel's flash. On a network of a few
# hundred weights its 4 kB tanh table (against 512 B of knots to interpolate, four instructions a tanh unit more) is
# most of the kernel and the straight-line code a few hundred bytes more than the table form; on a locomotion
# student neither binds (cost/cost.md, cost-small/cost.md)
INT_FLASH_RATIO = 1.5
LEVEL = 0.02
# without a meter: the compact kernel (benchmarks/results/kernels.md), else the next of these built and not left out
UNMEASURED_ORDER = ("compact", "compact-table", "generated", "generated-table", "generic")
MEASURED_ON = "cortex-m4f"
# export_dir -> {"instructions", "cycles", "flash_bytes", ...} on MEASURED_ON, or None when it cannot measure
KernelMeter = Callable[[Path], "dict | None"]
GENERATORS = {"compact": generate_compact, "generated": generate_kernel}
KERNEL_FILES = ("policy.c", "policy.h", "policy_weights.c", "policy_weights.h", "policy_config.h")


def return_check(ints: list[float], floats: list[float], final: bool = False, keep: float = KEEP_RETURN,
                 z: float = CHECK_Z, least: int = CHECK_MIN) -> tuple[bool | None, str]:
    """Whether the integer kernel keeps `keep` of the float kernel's return, from paired episode returns
    (ints[i] and floats[i] from the same start): once there are at least `least` pairs, True where the
    interval mean(d) +- z se(d) of the difference d = int - float lies wholly at or above the margin
    -(1 - keep) |mean(floats)|, False where wholly below; None (more episodes wanted) before that or in
    between, except at the last batch (final), where what is not shown to lose more than the margin ships
    (True): a task whose episodes sometimes fail cannot resolve 1 % in CHECK_BATCHES batches (Walker2d's
    interval over 300 paired episodes is about +-3 % of its return), and the float kernel it would fall back
    to may cost ten times the cycles for a difference nobody can see. With the sentence saying which."""
    a, b = np.asarray(ints, float), np.asarray(floats, float)
    if a.shape != b.shape or a.size == 0:
        raise ValueError("return_check wants paired returns, at least one episode")
    d = a - b
    n = d.size
    mean, margin = float(d.mean()), (1 - keep) * abs(float(b.mean()))
    se = float(d.std(ddof=1)) / np.sqrt(n) if n > 1 else float("inf")
    if n < least and not final:
        return None, ""
    if mean - z * se >= -margin:
        verdict, how = True, f"the interval is within {100 * (1 - keep):g} %"
    elif mean + z * se < -margin:
        verdict, how = False, f"the interval is below {100 * (1 - keep):g} %"
    elif final:
        verdict, how = True, f"at the last batch the interval does not show a loss beyond {100 * (1 - keep):g} %"
    else:
        return None, ""
    spread = f" +- {z * se:.1f}" if np.isfinite(se) else ""
    return verdict, (f"return over {n} paired episodes {a.mean():.1f} against the float kernel's {b.mean():.1f}, "
                     f"difference {mean:+.1f}{spread} ({'keeps' if verdict else 'misses'} {100 * keep:.0f} %: {how})")


def build_straight_line(kind: str, net: CollapsedNet, out: Path, source_hash: str, command: str, obs: np.ndarray,
                        ref: np.ndarray, budget: float, tolerance: float, table: bool | None = None) -> dict:
    """Write the compact or generated kernel into out, its tanh the cheapest form within budget of ref on
    obs (never a budget below the parity tolerance): of the rational forms (table False), the table form
    alone (True) or all (None). Returns the report's entry for it."""
    if budget < tolerance:
        raise BpdError(f"--tanh-budget {budget:g} is below the parity tolerance {tolerance:g}")
    forms = [f for f in tanh_forms() if table is None or bool(f.table) == table or (f.libm and not table)]
    form, tried = select_tanh(net, out, source_hash, command, obs, ref, budget, out / "build" / "tanh",
                              GENERATORS[kind], forms)
    return {"tanh": form.name, "tanh_max_abs_error": form.max_error(), "tanh_budget": budget,
            "tanh_candidates": tried}


# bytes per nonzero weight at the least (code and data), to skip building what cannot fit: the compact
# kernel's VFMA and table word, the generated kernel's VFMA, literal load and pool word, the integer
# kernel's half of an SMLAD and of its pair's table word, its table form's int16
BYTES_PER_WEIGHT = {"compact": 8, "generated": 12, "integer": 4, "integer-interp": 4, "integer-table": 2}


def too_big(kind: str, nonzero: int, flash_budget: int) -> str | None:
    """Why auto does not build this kernel for a network of this size, or None."""
    least = BYTES_PER_WEIGHT.get(kind, 0) * nonzero
    if least > flash_budget:
        return (f"not built: at least {least} B of flash ({BYTES_PER_WEIGHT[kind]} B per nonzero weight), over "
                f"the {flash_budget} B budget")
    return None


def choose(figures: dict[str, dict | None], flash_budget: int) -> tuple[str, str]:
    """(kind, reason) among the kinds figures names (None: not measured) by the rule: fewest cycles within
    the flash budget, else the least flash."""
    measured = {k: f for k, f in figures.items() if f}
    if not measured:
        k = next(k for k in UNMEASURED_ORDER if k in figures)
        return k, (f"not measured (no arm-none-eabi-gcc or emulator): {k}, as the project's measurements favour"
                   + ("" if k == "compact" else f" ({', '.join(UNMEASURED_ORDER)}: the first built and not left out)"))
    fits = {k: f for k, f in measured.items() if f["flash_bytes"] <= flash_budget}
    if fits:
        best = min(f["cycles"] for f in fits.values())
        level = {k: f for k, f in fits.items() if f["cycles"] <= best * (1 + LEVEL)}
        k = min(level, key=lambda k: (level[k]["flash_bytes"], level[k]["cycles"]))
        return k, (f"fewest estimated {MEASURED_ON} cycles ({level[k]['cycles']:.0f}; within {100 * LEVEL:.0f} % "
                   f"of the fewest, the least flash) among the kernels within the {flash_budget} B flash budget")
    k = min(measured, key=lambda k: measured[k]["flash_bytes"])
    return k, f"no kernel within the {flash_budget} B flash budget: the least flash ({measured[k]['flash_bytes']} B)"


def off_host(cost: dict | None, tol: float) -> str | None:
    """Why a kernel whose build for the core (the meter's emulated run, where the compact kernel is assembly) gives
    other actions than its host build, the one the parity check ran, by more than tol (0: the integer kernel, whose
    bits are checked) may not ship; None within it or not measured."""
    err = (cost or {}).get("max_abs_error_vs_host_c")
    if err is None or err <= tol:
        return None
    return (f"its emulated {(cost or {}).get('target', MEASURED_ON)} build differs from the checked host build "
            f"(max abs {err:.2e}, over {tol:.2e})")


def install(src: Path, out: Path) -> None:
    """Copy a candidate kernel's C files over the export's."""
    for f in KERNEL_FILES:
        shutil.copyfile(src / f, out / f)
