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
