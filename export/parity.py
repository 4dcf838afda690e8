"""The parity rule every export is held to: one place for the tolerance and how it scales.

A float32 form (onnxruntime, the ReferenceEvaluator, a C kernel) is compared with the float64 forward
pass of the same float32 weights: the exact function each approximates. It may differ by PARITY_TOL
of the half action range (at least PARITY_TOL, so a +-10 V policy is held to 1e-4 V like a +-1 policy
to 1e-5), or by FLOAT32_MARGIN times the network's own float32 rounding floor where that is larger:
a wide network with large weights moves its output by more than 1e-5 when only its input is rounded
to float32, and no float32 form can do better than that.
"""

from __future__ import annotations

import numpy as np

PARITY_TOL = 1e-5
FLOAT32_MARGIN = 4.0


def tolerance(action_low: np.ndarray, action_high: np.ndarray, float32_floor: float) -> float:
    """The allowed max abs action error, given the largest float32-vs-float64 error of a reference forward."""
    half = float(np.max(np.asarray(action_high, np.float64) - np.asarray(action_low, np.float64))) / 2
    return max(PARITY_TOL * max(1.0, half), FLOAT32_MARGIN * float32_floor)


def _fig(x: float) -> str:
    return f"{x:.2e}" if np.isfinite(x) else ("NaN" if np.isnan(x) else str(x))


def failure(parity: dict, tol: float, c_tol: float, kernel: str, limit: str) -> str:
    """The line a failed parity check ends with: each comparison over its tolerance, and what to try."""
    over = {k: (v, c_tol if k.startswith("c_") else tol) for k, v in parity.items()
            if k.endswith(("_torch", "_onnx")) and not v <= (c_tol if k.startswith("c_") else tol)}
    what = ", ".join(f"{k} {_fig(v)} over {_fig(t)}" for k, (v, t) in over.items())
    bug = "a bug of bpd: please report it with the student file"
    if not all(np.isfinite(v) for v, _ in over.values()):
        hint = "a non-finite action: look for NaN or Inf in the parity states' source (--dataset)"
    elif any(not k.startswith("c_") for k in over):
        hint = f"the ONNX graph differs from torch, {bug}"
    elif kernel == "integer":
        hint = f"the integer kernel is over {limit}: allow more, or ship a float kernel (--kernel compact)"
    elif kernel == "generic":
        hint = f"the generic C kernel differs from torch, {bug}"
    elif limit.startswith("--tanh-budget"):
        hint = f"the {kernel} kernel is over {limit}: try --kernel generic (libm tanh) or a larger --tanh-budget"
    else:  # no tanh approximation set it: its order of sums rounds another way than torch's, on this network
        hint = f"the {kernel} kernel's float rounding is over {limit} on this network: try --kernel generic"
    return f"parity check failed: {what}; {hint} (a previous export in --out is kept)"
