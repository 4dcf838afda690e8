"""How often a plan's students fall where no episode ends early: probe episodes beyond the reporting ones.

    ATEN_CPU_CAPABILITY=avx2 python benchmarks/tail_probe.py PLAN --env HalfCheetah-v5 --seed 2 \
        [--labels LABEL ...] [--episodes 200] [--runs RUNS] [--out benchmarks/results/tail-probe]

A handful of reporting episodes cannot tell a student that flips once in thirty from one that flips once in three
hundred, and a selection on 100 episodes that saw no flip says little more. For each named cell of the plan (its run
directory's handed-over student, float, as the cell's evaluation runs it) and for the teacher, this runs probe episodes
whose seeds (300000 + i) are disjoint from the reporting seeds (0 .. 99999), the periodic evaluations and the selection
seeds, so nothing here chooses a model. Per cell: the return as a share of the teacher's on the same episodes, the
early ends where the teacher finished, and the low-return falls (training/envs.py `low_where_teacher_finished`: both
finished and the student's return under half the teacher's on that seed) with a 95 % Wilson interval on their rate.
A measure the teacher is held to as well: the episodes (early ends, or returns under half the teacher's median probe
return) of the teacher and of each student, since the teacher has bad episodes of its own that the per-seed rule
cannot see (`bad_episodes`).

Resumable: each cell's episodes are written to OUT/probe/<env>-seed<N>/<label>.json as they finish and reused when
their student and episode count match. Writes OUT/<env>-seed<N>.json and .md (paths relative to the repository).
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from bpd.errors import BpdError  # noqa: E402
from bpd.io import portable_path, read_json, write_json, write_text  # noqa: E402

PROBE_SEED = 300_000


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a rate k/n."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    mid = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, mid - half), min(1.0, mid + half)


def bad_episodes(returns: list[float], terminated: list[bool], ref: float, low_share: float) -> int:
    """Episodes that ended early or returned under low_share of ref (the teacher's median probe return): one
    measure for the teacher and its students alike."""
    return sum(1 for r, t in zip(returns, terminated) if t or r < low_share * ref)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _episodes(model: Path, env: str, episodes: int, cache: Path) -> dict:
    """The model's probe episodes, from the cache when the same file ran as many."""
    from bpd_app.evaluate import load_any
    from training.envs import rollouts

    digest = _digest(model)
    if cache.exists():
        old = read_json(cache, "probe episodes")
        if old.get("sha256") == digest and old.get("episodes") == episodes:
            return old
    t0 = time.time()
    ep = rollouts(env, load_any(str(model)).act, episodes, PROBE_SEED)
    rec = {"model": portable_path(model), "sha256": digest, "episodes": episodes,
           "returns": [float(r) for r in ep.returns], "terminated": [bool(t) for t in ep.terminated],
           "seconds": round(time.time() - t0, 1)}
    write_json(cache, rec)
    return rec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("plan", type=Path)
    ap.add_argument("--env", required=True)
    ap.add_argument("--seed", type=int, required=True, help="the cells' run seed")
    ap.add_argument("--labels", nargs="*", default=None, help="the plan's method labels (default: every finished "
                    "cell of this environment and seed)")
    ap.add_argument("--episodes", type=int, default=200)
    ap.add_argument("--runs", type=Path, default=None, help="run root (default: the plan's)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "tail-probe")
    args = ap.parse_args(argv)
    try:
        return _main(args)
    except BpdError as e:
        print(f"tail_probe: error: {e}", file=sys.stderr)
        return 1


def _main(args: argparse.Namespace) -> int:
    from bpd_app.experiment.plan import load_plan
    from training.envs import (
        LOW_SHARE,
        Episodes,
        early_where_teacher_finished,
        fall_episodes,
        low_where_teacher_finished,
    )

    if args.episodes < 1:
        raise BpdError("--episodes must be at least 1")
    plan = load_plan(args.plan)
    runs = args.runs or plan.runs
    if args.env not in plan.envs:
        raise BpdError(f"{args.plan}: no environment {args.env}")
    labels = args.labels if args.labels is not None else [m.label for m in plan.methods.values()]
    unknown = [x for x in labels if x not in plan.methods]
    if unknown:
        raise BpdError(f"{args.plan}: no method labelled {', '.join(repr(x) for x in unknown)}")
    students = {label: runs / args.env / label / f"seed{args.seed}" / "run" / "student.pt" for label in labels}
    missing = [f"{args.env}/{label}/seed{args.seed}" for label, p in students.items() if not p.is_file()]
    if args.labels is not None and missing:
        raise BpdError(f"no student in {runs} for {', '.join(missing)}")
    students = {label: p for label, p in students.items() if p.is_file()}
    if not students:  # checked before any episode runs
        raise BpdError(f"{args.env} seed {args.seed}: no finished cell in {runs}")
    probe = args.out / "probe" / f"{args.env}-seed{args.seed}"
    teacher_path = Path(plan.teachers[args.env])
    t = _episodes(teacher_path, args.env, args.episodes, probe / "teacher.json")
    teacher = Episodes(t["returns"], [0] * args.episodes, t["terminated"], PROBE_SEED)
    median = float(np.median(t["returns"]))
    teacher_bad = bad_episodes(t["returns"], t["terminated"], median, LOW_SHARE)
    rows = []
    for label, student in students.items():
        e = _episodes(student, args.env, args.episodes, probe / f"{label}.json")
        ep = Episodes(e["returns"], [0] * args.episodes, e["terminated"], PROBE_SEED)
        low = low_where_teacher_finished(ep, teacher, LOW_SHARE)
        early = early_where_teacher_finished(e["terminated"], t["terminated"])
        lo, hi = wilson(low + early, args.episodes)
        rows.append({"label": label, "student": portable_path(student), "sha256": e["sha256"],
                     "return_mean": float(np.mean(e["returns"])), "return_min": float(np.min(e["returns"])),
                     "vs_teacher": float(np.mean(e["returns"]) / np.mean(t["returns"])),
                     "low_return_falls": low, "early_ends": early, "fall_rate_ci95": [lo, hi],
                     "bad_episodes": bad_episodes(e["returns"], e["terminated"], median, LOW_SHARE),
                     "fall_seeds": [PROBE_SEED + i for i in fall_episodes(ep, teacher, LOW_SHARE)]})
        print(f"{label}: {rows[-1]['vs_teacher']:.2%} of the teacher, {low} low-return falls and {early} early ends "
              f"in {args.episodes}", flush=True)
    cmd = (f"ATEN_CPU_CAPABILITY=avx2 python benchmarks/tail_probe.py {portable_path(args.plan)} --env {args.env} "
           f"--seed {args.seed} --episodes {args.episodes}"
           + (" --labels " + " ".join(args.labels) if args.labels else "")
           + (f" --out {portable_path(args.out)}" if args.out != HERE / "results" / "tail-probe" else ""))
    res = {"command": cmd, "plan": portable_path(args.plan), "env": args.env, "seed": args.seed,
           "episodes": args.episodes, "probe_seeds": [PROBE_SEED, PROBE_SEED + args.episodes - 1],
           "low_share": LOW_SHARE, "teacher": {"path": portable_path(teacher_path), "sha256": t["sha256"],
                                               "return_mean": float(np.mean(t["returns"])),
                                               "early_ends": int(sum(t["terminated"])),
                                               "return_median": median, "return_min": float(np.min(t["returns"])),
                                               "bad_episodes": teacher_bad},
           "cells": rows}
    out = args.out / f"{args.env}-seed{args.seed}"
    write_json(out.with_suffix(".json"), res)
    lines = [f"# {args.env} seed {args.seed}: falls on {args.episodes} probe episodes", "",
             f"Written by `{cmd}`.", "",
             f"Probe seeds {PROBE_SEED}..{PROBE_SEED + args.episodes - 1}: disjoint from the reporting, periodic and "
             "selection seeds; nothing here chose a model. Each cell's handed-over student (float), the teacher on the "
             f"same episodes (return {res['teacher']['return_mean']:,.1f}, {res['teacher']['early_ends']} early ends). "
             f"A fall: an early end, or a return under {LOW_SHARE:g} of the teacher's on that seed, where the teacher "
             "finished. Interval: 95 % Wilson interval of the fall rate. Bad episodes, a measure the teacher is held "
             f"to too: early ends and returns under {LOW_SHARE:g} of the teacher's median probe return "
             f"({median:,.1f}).", "",
             "| cell | return (% of teacher) | lowest episode | falls (low return + early end) | fall rate [95 % CI] "
             "| bad episodes |", "|---|---:|---:|---:|---|---:|",
             f"| teacher | {res['teacher']['return_mean']:,.1f} (100.0 %) | {res['teacher']['return_min']:,.1f} "
             f"| - | - | {teacher_bad} |"]
    for r in rows:
        lo, hi = r["fall_rate_ci95"]
        n = r["low_return_falls"] + r["early_ends"]
        lines.append(f"| {r['label']} | {r['return_mean']:,.1f} ({100 * r['vs_teacher']:.1f} %) | "
                     f"{r['return_min']:,.1f} | {n} ({r['low_return_falls']} + {r['early_ends']}) | "
                     f"{100 * n / args.episodes:.1f} % [{100 * lo:.1f}, {100 * hi:.1f}] | {r['bad_episodes']} |")
    write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print(f"wrote {portable_path(out.with_suffix('.md'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
