"""Regenerate tests/golden/hand_net.json: a small hand-written network and its outputs in float64.

    python tests/golden/make_golden.py
"""

import json
from pathlib import Path

import numpy as np

# obs 3 -> 4 tanh -> 2, tanh output scaled to bounds [-2, 2] and [0, 1].
# Hidden unit 1 has no incoming weights (a constant, folded forward); unit 3 has no outgoing
# weights (dead). Observation normalisation mean [0.5, -1, 0], std [2, 1, 4].
NET = {
    "weights": [[[1.0, -0.5, 0.0], [0.0, 0.0, 0.0], [0.25, 0.0, 2.0], [3.0, 1.0, 1.0]],
                [[0.5, 1.5, -1.0, 0.0], [-2.0, 0.75, 0.0, 0.0]]],
    "biases": [[0.1, 0.8, -0.2, 0.3], [0.05, -0.1]],
    "activation": "tanh", "output": "tanh",
    "obs_mean": [0.5, -1.0, 0.0], "obs_std": [2.0, 1.0, 4.0],
    "action_low": [-2.0, 0.0], "action_high": [2.0, 1.0],
}
INPUTS = [[0.0, 0.0, 0.0], [0.5, -1.0, 0.0], [1.0, 2.0, -3.0], [-4.0, 0.25, 8.0], [10.0, -10.0, 5.0]]


def forward(x):
    h = (np.asarray(x, np.float64) - NET["obs_mean"]) / NET["obs_std"]
    w0, w1 = (np.asarray(w) for w in NET["weights"])
    h = np.tanh(w0 @ h + NET["biases"][0])
    y = w1 @ h + NET["biases"][1]
    low, high = np.asarray(NET["action_low"]), np.asarray(NET["action_high"])
    return low + (np.tanh(y) + 1) / 2 * (high - low)


if __name__ == "__main__":
    out = dict(NET, inputs=INPUTS, outputs=[forward(x).tolist() for x in INPUTS],
               widths_after=[3, 2, 2])
    Path(__file__).with_name("hand_net.json").write_text(json.dumps(out, indent=1) + "\n")
