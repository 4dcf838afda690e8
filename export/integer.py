"""`bpd export --int`: an integer kernel built, calibrated and checked, in either form: the straight-line
DSP assembly (fixed_point.py) or the table form (int_table.py). Apart from both so that neither form's
module needs the other."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from bpd.errors import BpdError
from export.c_export import CPolicy
from export.collapse import CollapsedNet
from export.fixed_point import IntPolicy, generate_int_kernel, int_form, quantise
from export.int_plan import generate_int_table_kernel


def integer_kernel(net: CollapsedNet, out: Path, source_hash: str, command: str, obs: np.ndarray, ref: np.ndarray,
                   dataset: str | None, room: int | None = None, lookup: bool = True) -> tuple[dict, CPolicy]:
    """`bpd export --int`: the integer kernel in out, calibrated on the dataset's observations (or,
    without one, on the parity states), checked bit-exact against IntPolicy, with its error against
    the float student's actions ref on obs. room None: the straight-line form, tanh by one lookup in its
    4 kB table or (not lookup) interpolated between 128 knots; else the table form (int_table.py) with
    room bytes of flash to spend on speed. Returns the report's `int` entry and the
    compiled kernel."""
    from training.collect import dataset_exists, load_dataset

    if dataset is not None and dataset_exists(dataset):
        calib, origin = load_dataset(dataset, net.obs_dim).observations, f"dataset {dataset}"
    else:
        calib, origin = obs, "parity states (no dataset found)"
    q = quantise(net, calib, origin)
    if room is None:
        form: dict = {"form": int_form(lookup)} | generate_int_kernel(net, q, out, source_hash, command, lookup)
    else:
        table = generate_int_table_kernel(net, q, out, source_hash, command, room)
        form = {"form": table.pop("form"), "table": table}
    ic = CPolicy(out)
    c_int = ic.act(obs)
    exact = bool(np.array_equal(c_int.view(np.uint32), IntPolicy(q).act(obs).view(np.uint32)))
    if not exact:
        raise BpdError("the integer C kernel differs from its numpy model: a compiler or generator fault")
    err = np.abs(c_int - ref)
    span = np.maximum(net.action_high - net.action_low, 1e-12)
    return {"dir": str(out)} | form | {"calibration": q.calibration,
            "states": len(obs), "c_matches_numpy_model": exact, "checked_build": "host (scalar C form)",
            "max_abs_error_vs_float": float(err.max()), "mean_abs_error_vs_float": float(err.mean()),
            "max_error_vs_action_range": float((err / span).max())}, ic


FIT_SLACK = 64  # bytes of the budget a table-form build may leave before one more try spends them


def fitted_table_kernel(net: CollapsedNet, kernels: Path, sha: str, command: str, obs: np.ndarray, ref: np.ndarray,
                        dataset: str | None, int_budget: float, meter: Callable[[Path], dict | None] | None,
                        budget: int) -> tuple[dict, Path, dict | None]:
    """The integer kernel's table form (int_table.py) fitted to `budget` bytes: built with no room first
    (the least flash), then with the room the budget leaves beyond what that measured (estimated without a
    meter) spent on speed: with less room if the meter finds it over the budget, with the bytes it left
    (FIT_SLACK or more) added if under; three tries at most, the last
    within the budget the candidate. Its report entry, directory and figures."""
    def build(name: str, room: int) -> tuple[dict, Path, dict | None]:
        d = kernels / name
        entry, _ = integer_kernel(net, d, sha, command + " (int)", obs, ref, dataset, room)
        return entry | {"dir": f"build/kernels/{name}", "int_budget": int_budget}, d, meter(d) if meter else None

    best = build("integer-table-least", 0)
    base = best[2]["flash_bytes"] if best[2] else best[0]["table"]["estimate"]["flash"]
    tries = [{"room": 0, "plan": best[0]["table"]["plan"], "flash_bytes": best[2] and best[2]["flash_bytes"]}]
    room, best_room, built = budget - base, 0, None  # built: the plan the integer-table directory holds
    for _ in range(3):
        if room <= 0:
            break
        fit = build("integer-table", room)
        built = fit[0]["table"]["plan"]
        if built == tries[-1]["plan"]:
            break  # the room buys nothing more
        tries.append({"room": room, "plan": built, "flash_bytes": fit[2] and fit[2]["flash_bytes"]})
        if fit[2] is None:
            best, best_room = fit, room
            break
        if fit[2]["flash_bytes"] <= budget:
            best, best_room = fit, room
            if budget - fit[2]["flash_bytes"] < FIT_SLACK:
                break
            room += budget - fit[2]["flash_bytes"]  # the estimate overshot: what it left spent too
        elif best_room:
            break  # over the budget after a fit within it: that fit stands
        else:
            room -= fit[2]["flash_bytes"] - budget  # the estimate fell short by this much
    if best_room and built != best[0]["table"]["plan"]:  # the directory holds a later try over the budget
        best = build("integer-table", best_room)
    best[0]["fit"] = {"flash_budget": budget, "tries": tries}
    return best
