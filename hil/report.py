"""Plots of a trial, from its logs alone: `bpd hil report LOG_DIR`; with --html, the live view's page
of the finished trial as one file (write_html). The timing statistics and, for a hand-over trial, which
controller drove each tick are computed again from the tick log into summary.json."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bpd.config import field
from bpd.errors import BpdError
from bpd.io import read_json, save_png, write_json
from bpd.view import page_html
from hil.ticklog import CUT_SHORT, HANDOVER, SIMULATED, handover_summary, read_ticks, timing_summary


@dataclass
class ReportConfig:
    log_dir: str = field(help="a trial's log directory", positional=True)
    html: bool = field(False, help="also write LOG_DIR/trial.html: the live view's page for this trial, one "
                       "self-contained file (plots and summary, opens offline)")


def episode_lengths(rows: list[dict]) -> dict[int, int]:
    """Ticks per episode in the tick log, in order."""
    out: dict[int, int] = {}
    for r in rows:
        out[int(float(r["episode"]))] = out.get(int(float(r["episode"])), 0) + 1
    return out


def episode_titles(summary: dict, lengths: dict[int, int]) -> dict[int, str]:
    """How each episode of the tick log ended: the summary's words, or, for one the trial's end cut short (its ticks
    are logged; the summary names it so, or has no entry for it), the trial's own end."""
    done = {e.get("episode"): e for e in summary.get("episodes") or [] if isinstance(e, dict)}
    out = {}
    for ep, n in lengths.items():
        how = done[ep].get("ended", "?") if ep in done else \
            f"{CUT_SHORT}: the trial ended ({summary.get('ended', 'without saying how')})"
        out[ep] = f"episode {ep}: {n} ticks, {how}"
    return out


def ended_early(summary: dict, lengths: dict[int, int]) -> str | None:
    """One line when the trial did not complete: how it ended and the episodes it cut short; None when complete."""
    ended = summary.get("ended", "complete")
    if ended == "complete":
        return None
    done = {e.get("episode") for e in summary.get("episodes") or []  # a cut one is named so (or absent, in older logs)
            if isinstance(e, dict) and not str(e.get("ended", "")).startswith(CUT_SHORT)}
    cut = [f"episode {ep} {CUT_SHORT} after {n} ticks" for ep, n in lengths.items() if ep not in done]
    return f"the trial ended early: {ended}" + (f"; {', '.join(cut)}" if cut else "")


def rig_labels(summary: dict) -> dict[str, str]:
    """The trial's rig's names and units of obs0.. and action0.. ("position, m"); none when its YAML is not found
    here (the figures keep the column names)."""
    from firmware_host.rig import load_rig
    from firmware_host.rig.sim_view import column_labels

    for rig in ((summary.get("config") or {}).get("rig"), summary.get("rig")):
        if isinstance(rig, str):
            try:
                return column_labels(load_rig(rig))
            except BpdError:  # a rig YAML of another machine: the labels are only a help
                continue
    return {}


def render(log_dir: str | Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = Path(log_dir)
    if not d.is_dir():
        raise BpdError(f"{d}: not a directory; give the trial's log directory (its --out: ticks.csv, summary.json)"
                       if d.exists() else f"{d}: no such log directory")
    summ_path = d / "summary.json"
    if not (d / "ticks.csv").is_file():
        raise BpdError(f"{d}: no ticks.csv, not a trial's log directory (`bpd hil run --out`)")
    if not summ_path.is_file() and (d / "ticks.csv").is_file():
        raise BpdError(f"{d}: no summary.json, the trial did not finish writing its logs (its ticks are in "
                       "ticks.csv); the report reads a finished trial")
    rows = read_ticks(d / "ticks.csv")
    if not rows:
        raise BpdError(f"{d}: no ticks.csv with rows")
    summary = read_json(summ_path, "trial summary")
    if not isinstance(summary, dict):
        raise BpdError(f"{summ_path}: corrupt trial summary (not a JSON object)")
    periods = [float(r["device_period_us"]) for r in rows if r["device_period_us"]]
    try:
        period = float(summary.get("target_period_us") or (np.median(periods) if periods else 0))
    except (TypeError, ValueError):
        period = 0.0
    if not np.isfinite(period) or period <= 0:
        raise BpdError(f"{summ_path}: no valid target period recorded and none in the log")
    counted = (summary.get("timing") or {}).get("ticks") if isinstance(summary.get("timing"), dict) else None
    if isinstance(counted, int) and counted != len(rows):  # the trial's own count, from the same log as it ended
        raise BpdError(f"{d / 'ticks.csv'}: {len(rows)} ticks, where its summary.json counts {counted}: the tick log "
                       "was cut or changed since the trial; nothing rewritten")
    summary["timing"] = timing_summary(d / "ticks.csv", int(period))
    handover = handover_summary(d / "ticks.csv")
    if handover is not None:
        summary["handover"] = handover
    figures = []
    titles = episode_titles(summary, episode_lengths(rows))
    pil = (summary.get("config") or {}).get("port") == "pil"  # QEMU: a virtual ns is an instruction (rule 16)
    col = lambda k: np.array([float(r[k]) if r[k] != "" else np.nan for r in rows])
    labels = rig_labels(summary)
    out = []
    fig, axes = plt.subplots(2, 4, figsize=(16, 6))
    for ax, (k, label) in zip(axes.ravel(), [("device_period_us", "period (us)"), ("host_step_us", "host step (us)"),
                                             ("host_compute_us", "host compute (us)"), ("rtt_us", "round trip (us)"),
                                             ("infer_ns", "on-device inference (instructions, QEMU)" if pil
                                              else "on-device inference (ns)"),
                                             ("policy_cycles", "policy call (device cycles)"),
                                             ("device_jitter_us", "tick jitter on the device (us)"),
                                             ("skipped", "skipped states")]):
        x = col(k) if k in rows[0] else np.array([])  # a log from before protocol 4 has no device timing
        x = x[np.isfinite(x) & (x > 0)] if k in ("rtt_us", "infer_ns", "policy_cycles") else x[np.isfinite(x)]
        ax.hist(x, bins=50) if x.size else ax.text(0.5, 0.5, "no data", ha="center")
        ax.set_title(label)
        ax.set_yscale("log")
    out.append(d / "timing_histograms.png")
    figures.append(fig)
    fig, ax = plt.subplots(figsize=(10, 3.5))
    ax.plot(col("device_period_us"), lw=0.6)
    ax.axhline(period, color="k", ls="--", lw=0.8)
    ax.set_xlabel("tick")
    ax.set_ylabel("device period (us)")
    out.append(d / "period.png")
    figures.append(fig)
    ep = col("episode")
    classical = col(HANDOVER[0]) > 0 if handover is not None else None
    for e in np.unique(ep):
        m = ep == e
        fig, axs = plt.subplots(3, 1, figsize=(9, 6), sharex=True)
        axs[0].plot(col("obs0")[m], label="position")
        axs[1].plot(col("obs1")[m], label="angle", color="tab:orange")
        axs[2].plot(col("action0")[m], label="action", color="tab:green")
        for a, lab in zip(axs, (labels.get("obs0", "position"), labels.get("obs1", "angle"),
                                labels.get("action0", "action"))):
            a.set_ylabel(textwrap.fill(lab, 22), fontsize="small")  # a long unit on lines of its own
            if classical is not None:  # the ticks the classical controller drove, shaded
                a.fill_between(np.arange(m.sum()), 0, 1, where=classical[m], color="0.85", lw=0,
                               transform=a.get_xaxis_transform(), label="classical controller")
        if classical is not None:
            axs[0].legend(loc="upper right", fontsize="small")
        axs[2].set_xlabel("step")
        axs[0].set_title(textwrap.fill(titles.get(int(e), f"episode {int(e)}"), 100), fontsize="medium")
        out.append(d / f"trajectory_ep{int(e)}.png")
        figures.append(fig)
    for fig, path in zip(figures, out):  # written only once every figure was drawn
        save_png(fig, path, dpi=90)
    write_json(summ_path, summary)
    return out


def write_html(log_dir: str | Path) -> Path:
    """LOG_DIR/trial.html: the view of a finished trial in one self-contained file."""
    d = Path(log_dir)
    if not (d / "summary.json").is_file():
        raise BpdError(f"{d}: no summary.json; --html reads a finished trial")
    rows = read_ticks(d / "ticks.csv")
    if not rows:
        raise BpdError(f"{d}: no ticks.csv with rows")
    summary = read_json(d / "summary.json", "trial summary")
    if not isinstance(summary, dict):
        raise BpdError(f"{d / 'summary.json'}: corrupt trial summary (not a JSON object)")
    columns = list(rows[0])
    data = {"columns": columns, "meta": {"rig": summary.get("rig"), "period_us": summary.get("target_period_us"),
                                         "mode": (summary.get("config") or {}).get("mode"),
                                         "device": SIMULATED.get(str((summary.get("config") or {}).get("port"))),
                                         "labels": rig_labels(summary)},
            "start": 0, "rows": [[r[c] for c in columns] for r in rows], "next": len(rows), "done": True,
            "summary": summary}
    out = d / "trial.html"
    out.write_bytes(page_html(live=False, data=data))
    return out
