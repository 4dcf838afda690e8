"""A distillation run's metrics file: its columns, its cut back to a checkpoint on resumption, and its plot."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from bpd.errors import BpdError
from bpd.io import atomic_write, save_png

METRIC_FIELDS = ["step", "time_s", "losses/critic", "losses/actor", "losses/bc", "losses/q", "losses/kl", "eta",
                 "lambda", "sparsity/weights", "params_nonzero", "eval/return_mean", "eval/return_std", "losses/l1"]


def truncate_metrics(path: Path, step: int) -> None:
    """Drop metric rows written after the checkpoint we resume from."""
    if not path.exists():
        return
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        keep = [r for r in rows if int(float(r["step"])) <= step]
    except (KeyError, TypeError, ValueError, csv.Error):  # UnicodeDecodeError is a ValueError
        raise BpdError(f"{path}: corrupt metrics (a row without a step); remove the run to start over") from None
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=METRIC_FIELDS)
    w.writeheader()
    w.writerows(keep)
    atomic_write(path, lambda f: f.write(buf.getvalue()), mode="w")


def plot_metrics(metrics: Path, out: Path) -> None:
    """Return and sparsity over training, as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(metrics, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    step = [float(r["step"]) for r in rows]
    fig, ax1 = plt.subplots(figsize=(7, 4))
    ax1.plot(step, [float(r["eval/return_mean"]) for r in rows], "o-", color="tab:blue", label="return")
    ax1.set_xlabel("gradient step")
    ax1.set_ylabel("return (collapsed student)", color="tab:blue")
    ax2 = ax1.twinx()
    ax2.plot(step, [100 * float(r["sparsity/weights"]) for r in rows], "s--", color="tab:red", label="sparsity")
    ax2.set_ylabel("weights pruned (%)", color="tab:red")
    ax2.set_ylim(0, 100)
    ax1.set_title("BPD distillation")
    save_png(fig, out)
