"""`bpd export --int`: an integer kernel built, calibrated and checked, in either form: the straight-line
DSP assembly (fixed_point.py) or the table form (int_table.py). Apart from both so that neither form's
module needs the other."""

from __future__ import annotations

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
