"""The boot self-test an export carries: observations and the shipped kernel's own actions for them,
written as policy_selftest.h beside the weights. The firmware runs each observation through the
policy at boot and on RESET and refuses to run the policy when an action differs by more than the
tolerance stored with them (docs/protocol.md, "Self-test"): a weight changed after export (a flash
bit flipped, a file edited, a build from other sources) is caught before the policy drives a plant.

The tolerance: 0 (bit-exact) for the integer kernel, whose arithmetic is the same on every target;
for a float kernel twice the export's own C parity tolerance, because the host build that computed
the stored action and the target's build (another compiler, libm and FPU) are each held within that
tolerance of the same float64 reference, so they differ from each other by at most twice it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bpd.io import write_text

FILE = "policy_selftest.h"


def pick_observation(obs: np.ndarray, actions: np.ndarray, low: np.ndarray, high: np.ndarray) -> int:
    """The index of the observation whose action is nearest the middle of the action range: a saturated
    action (at a bound, or where tanh is flat) would hide a changed weight."""
    lo, hi = np.asarray(low, np.float64), np.asarray(high, np.float64)
    half = np.maximum((hi - lo) / 2, 1e-12)
    off_centre = np.abs((np.asarray(actions, np.float64) - (lo + hi) / 2) / half).max(axis=1)
    finite = np.isfinite(off_centre)
    return int(np.argmin(np.where(finite, off_centre, np.inf)))


def float_tolerance(parity: dict) -> float:
    """A float kernel's tolerance: twice the C parity tolerance its export was held to."""
    return 2.0 * float(parity.get("c_tolerance", parity["tolerance"]))


def _floats(a: np.ndarray) -> str:
    from export.c_export import c_float

    return ", ".join(c_float(float(x)) for x in np.asarray(a, np.float32).ravel())


def write_selftest(out: Path, obs: np.ndarray, actions: np.ndarray, tol: float, why: str, banner: str,
                   prefix: str = "bpd", file: str | None = None) -> dict:
    """Write out/policy_selftest.h (or out/file): n observations (n x obs_dim), the shipped kernel's actions for
    them (n x act_dim) and the tolerance; returns the record export.json keeps of it."""
    file = file or FILE
    from export.c_export import c_float

    obs = np.atleast_2d(np.asarray(obs, np.float32))
    actions = np.atleast_2d(np.asarray(actions, np.float32))
    if len(obs) != len(actions) or not (np.isfinite(obs).all() and np.isfinite(actions).all()):
        raise ValueError("a self-test pair needs as many finite observations as actions")
    up = prefix.upper()
    text = (f"{banner}#ifndef {up}_POLICY_SELFTEST_H\n#define {up}_POLICY_SELFTEST_H\n"
            f"/* The boot self-test (docs/protocol.md, \"Self-test\"):\n * {why} */\n"
            f"#define {up}_SELFTEST_N {len(obs)}\n"
            f"#define {up}_SELFTEST_OBS {{ {_floats(obs)} }}\n"
            f"#define {up}_SELFTEST_ACTION {{ {_floats(actions)} }}\n"
            f"#define {up}_SELFTEST_TOL {c_float(tol)}\n#endif\n")
    write_text(Path(out) / file, text)
    return {"file": file, "pairs": len(obs), "tolerance": float(np.float32(tol)), "rule": why,
            "observations": obs.tolist(), "actions": actions.tolist()}


def selftest_for_kernel(out: Path, obs: np.ndarray, kernel: str, parity: dict, low: np.ndarray, high: np.ndarray,
                        banner: str) -> dict:
    """The self-test of the kernel shipped in out: one observation picked from obs (the export's parity
    states) and the compiled kernel's own action for it."""
    from export.c_export import CPolicy

    c = CPolicy(out)
    acts = c.act(np.asarray(obs, np.float32))
    i = pick_observation(obs, acts, low, high)
    if kernel == "integer":
        tol, why = 0.0, "integer kernel: bit-exact on every target"
    else:
        tol = float_tolerance(parity)
        why = (f"{kernel} float kernel: within twice the export's C parity tolerance "
               f"({tol / 2:.3g}; host and target builds are each within it of the float64 reference)")
    return write_selftest(out, obs[i], acts[i], tol, why, banner)


def selftest_banner(model_hash: str, command: str) -> str:
    return f"/* generated - do not edit.\n * model hash: {model_hash}\n * regenerate with: {command}\n */\n"
