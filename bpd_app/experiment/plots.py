"""The plots committed beside a plan's tables: return against size, learning curves against gradient
steps and against environment steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bpd_app.experiment.plan import Plan


def _plots(plan: Plan, rows: list[dict], aggs: list[dict], out: Path) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bpd.io import save_png

    written = []
    for env in plan.envs:
        ar = [a for a in aggs if a["env"] == env and a["done"]]
        if not ar:
            continue
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(12.5, 4))
        for i, a in enumerate(ar):
            vs = [s["vs_teacher"] for s in a["per_seed"] if s["vs_teacher"] is not None]
            a1.bar(i, np.mean(vs) * 100 if vs else 0, color="tab:blue", alpha=0.5)
            a1.scatter([i] * len(vs), [100 * v for v in vs], color="k", s=12, zorder=3)
            # Ten colours in the cycle; past them the marker changes, so up to fifty methods look distinct.
            a2.scatter([s["nonzero"] for s in a["per_seed"]], [100 * (s["vs_teacher"] or 0) for s in a["per_seed"]],
                       label=a["label"], s=20, marker="os^Dv"[(i // 10) % 5])
        a1.set_xticks(range(len(ar)), [a["label"] for a in ar], rotation=30, ha="right", fontsize=7)
        a1.axhline(95, color="grey", ls=":")
        a1.set_ylabel("return, % of teacher (bar: mean; dots: seeds)")
        a2.set_xscale("log")
        a2.set_xlabel("nonzero parameters")
        a2.set_ylabel("return, % of teacher")
        a2.axhline(95, color="grey", ls=":")
        # Beside the axes, not over them: a legend inside covers points wherever it is put.
        a2.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
        fig.suptitle(env)
        name = f"{env}.png"
        save_png(fig, out / name)
        written.append(name)
        for group, labels in [("", None), *plan.groups.items()]:
            curves = _curves(plan, env, [a for a in ar if labels is None or a["label"] in labels], rows, out, group)
            if curves:
                written.append(curves)
        if (online := _env_step_curves(plan, env, rows, out)):
            written.append(online)
    return written


def _env_step_curves(plan: Plan, env: str, rows: list[dict], out: Path) -> str | None:
    """<env>.env-curves.png: periodic evaluation return against environment steps for the methods
    that learn by interacting with the environment (online SAC, the online distillation rules), from
    the cells' summaries, with the teacher's return and BPD's (offline, from the teacher's dataset) as
    references. An existing plot is kept when no summary holds a curve any more."""
    import textwrap

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bpd.io import save_png

    name = f"{env}.env-curves.png"
    fig, ax = plt.subplots(figsize=(7, 4))
    any_curve, missing = False, []
    for label in plan.methods:
        done = [r["result"] for r in rows if r["env"] == env and r["label"] == label and r["result"]]
        if not any((d.get("train") or {}).get("control") not in (None, "teacher") for d in done):
            continue  # learns from the teacher's dataset (summaries older than the control field say None)
        curves = [((d.get("train") or {}).get("curve") or {}) for d in done]
        curves = [(c["env_steps"], c["return"]) for c in curves if len(set(c.get("env_steps") or [])) > 1]
        if curves:
            any_curve = True
            n = min(len(c[0]) for c in curves)
            y = np.array([c[1][:n] for c in curves])
            note = "" if len(curves) == len(done) else f" ({len(curves)} of {len(done)} seeds)"
            line, = ax.plot(curves[0][0][:n], y.mean(0), label=label + note)
            ax.fill_between(curves[0][0][:n], y.min(0), y.max(0), alpha=0.15, color=line.get_color())
        elif done:
            missing.append(label)
    if not any_curve:
        plt.close(fig)
        return name if (out / name).is_file() else None
    finished = [r["result"] for r in rows if r["env"] == env and r["result"]]
    teacher = next((d["teacher"]["return_mean"] for d in finished if (d.get("teacher") or {}).get("return_mean")), None)
    if teacher is not None:
        ax.axhline(teacher, color="grey", ls="--", lw=1, label="teacher (30 reporting episodes)")
    bpd = [d["eval"]["return_mean"] for d in finished if d["method"] == "bpd" and d["label"] == "bpd"]
    if bpd:
        steps = next((d["train"].get("env_steps") for d in finished if d["label"] == "bpd"), None)
        ax.axhline(float(np.mean(bpd)), color="k", ls=":", lw=1,
                   label=f"bpd, offline from {steps:,} teacher steps ({len(bpd)} seeds, reporting episodes)"
                   if steps else f"bpd ({len(bpd)} seeds)")
    if missing:
        ax.text(0.0, -0.16, "\n".join(textwrap.wrap("no curve kept (cells run before summaries held one): "
                                                    + ", ".join(missing), 140)),
                fontsize=6, transform=ax.transAxes, va="top")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("evaluation return (band: min-max over seeds)", fontsize=8)
    ax.legend(fontsize=6, loc="lower right")
    ax.set_title(f"{env}: learning by interaction")
    save_png(fig, out / name)
    return name


def _curves(plan: Plan, env: str, ar: list[dict], rows: list[dict], out: Path, group: str = "") -> str | None:
    """Learning curves (periodic evaluation return) of the runs whose summaries hold one, one PNG; the
    legend says how many seeds each line has where some lack a curve (summaries older than curves)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bpd.io import save_png

    fig, ax = plt.subplots(figsize=(7, 4))
    any_curve = False
    missing: list[str] = []
    for a in ar:
        done = [r["result"] for r in rows if r["env"] == env and r["label"] == a["label"] and r["result"]]
        curves = [((d.get("train") or {}).get("curve") or {}) for d in done]
        curves = [(c["step"], c["return"]) for c in curves if c.get("step")]
        if curves:
            any_curve = True
            n = min(len(c[0]) for c in curves)
            y = np.array([c[1][:n] for c in curves])
            note = "" if len(curves) == len(done) else f" ({len(curves)} of {len(done)} seeds)"
            ax.plot(curves[0][0][:n], y.mean(0), label=a["label"] + note)
            ax.fill_between(curves[0][0][:n], y.min(0), y.max(0), alpha=0.15)
        elif done:
            missing.append(a["label"])
    if any_curve and missing:
        import textwrap
        text = textwrap.wrap("no curve kept (cells run before summaries held one; see the plot's git history): "
                             + ", ".join(missing), 140)
        ax.text(0.0, -0.16, "\n".join(text), fontsize=6, transform=ax.transAxes, va="top")
    slug = "".join(ch if ch.isalnum() else "-" for ch in group.lower()).strip("-")
    name = f"{env}.{slug}.curves.png" if group else f"{env}.curves.png"
    if any_curve:
        ax.set_xlabel("gradient step")
        ax.set_ylabel("periodic evaluation return (mean, min-max over seeds)")
        ax.legend(fontsize=6)
        ax.set_title(f"{env}: {group}" if group else env)
        save_png(fig, out / name)
        return name
    plt.close(fig)
    # no summary holds a curve (cells restored from summaries older than curves): the plot drawn when
    # their run directories were at hand stays
    return name if (out / name).is_file() else None
