"""Where double-pendulum students fall: early terminations of every evaluated student of a run.

    python benchmarks/idp_starts.py RUN_DIR [RUN_DIR ...] [--label LABEL ...] [--episodes 60]

For each distillation run it reloads every student the run evaluated during training (candidates.pt),
collapses it and runs it on probe episodes whose seeds (300000 + i) are disjoint from the reporting
seeds (0 .. 99999), the periodic evaluations (100000 + 1000 * run seed + i) and the selection seeds
(200000 + 1000 * run seed + i), so the probe chooses nothing. The teacher runs the same episodes. The
question it answers: are a run's early terminations a matter of which student the selection rule
hands over (then some evaluated student would not fall), or of every student the run produced?

Writes benchmarks/results/idp_starts.json and .md (paths recorded relative to the repository).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from bpd.io import portable_path, read_json, write_json, write_text  # noqa: E402

ENV = "InvertedDoublePendulum-v5"
PROBE_SEED = 300_000
KEYS = ("obs_mean", "obs_std", "action_low", "action_high")


def probe_run(run: Path, episodes: int) -> dict:
    import torch

    from training.envs import rollouts
    from training.selection import load_candidates, student_from

    blob = torch.load(run / "student.pt", weights_only=False, map_location="cpu")
    meta, stats = blob["meta"], {k: v.numpy() for k, v in blob["stats"].items()}
    cfg = read_json(run / "config.json", "run configuration")
    rows = []
    for c in load_candidates(run / "candidates.pt"):
        pol = student_from(meta, c.state_dict).collapse(**{k: stats[k] for k in KEYS})
        ep = rollouts(ENV, pol.act, episodes, PROBE_SEED)
        rows.append({"step": c.step, "params_nonzero": c.params_nonzero, "train_return": c.train_return,
                     "probe_return_mean": float(np.mean(ep.returns)), "probe_early_terminations": ep.early_terminations,
                     "probe_failed_seeds": [PROBE_SEED + i for i, t in enumerate(ep.terminated) if t]})
    summary = read_json(run / "summary.json", "run summary") if (run / "summary.json").exists() else {}
    return {"run": portable_path(run), "dataset": portable_path(cfg.get("dataset", "")), "seed": cfg.get("seed"),
            "chosen_step": (summary.get("selection") or {}).get("chosen", {}).get("step"), "candidates": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--label", action="append", default=[], help="a label per run, in order (default: the path)")
    ap.add_argument("--teacher", type=Path, default=ROOT / "benchmarks" / "teachers" / f"{ENV}.npz")
    ap.add_argument("--episodes", type=int, default=60)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "idp_starts")
    args = ap.parse_args()
    from bpd_app.evaluate import load_any
    from training.envs import rollouts

    t0 = time.time()
    teacher = load_any(str(args.teacher))
    tep = rollouts(ENV, teacher.act, args.episodes, PROBE_SEED)
    res = {"env": ENV, "probe_seeds": [PROBE_SEED, PROBE_SEED + args.episodes - 1], "episodes": args.episodes,
           "teacher": {"path": portable_path(args.teacher), "return_mean": float(np.mean(tep.returns)),
                       "early_terminations": tep.early_terminations,
                       "failed_seeds": [PROBE_SEED + i for i, t in enumerate(tep.terminated) if t]},
           "runs": []}
    for i, run in enumerate(args.runs):
        r = probe_run(run, args.episodes)
        r["label"] = args.label[i] if i < len(args.label) else r["run"]
        res["runs"].append(r)
        print(f"{r['label']}: " + ", ".join(f"step {c['step']} ({c['params_nonzero']} nz) "
                                             f"{c['probe_early_terminations']}" for c in r["candidates"]), flush=True)
    res["seconds"] = time.time() - t0
    res["command"] = "python benchmarks/idp_starts.py " + " ".join(portable_path(r) for r in args.runs) + "".join(
        f" --label {x!r}" for x in args.label)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out.with_suffix(".json"), res)
    lines = [f"# {ENV}: early terminations of every evaluated student", "",
             f"`{res['command']}`", "",
             f"{args.episodes} probe episodes (seeds {res['probe_seeds'][0]}..{res['probe_seeds'][1]}, disjoint from "
             "reporting, periodic and selection seeds). Teacher: return "
             f"{res['teacher']['return_mean']:.1f}, {res['teacher']['early_terminations']} early terminations.", "",
             "| run | step | nonzero | periodic return | probe return | probe early terminations | handed over |",
             "|---|---:|---:|---:|---:|---:|:-:|"]
    for r in res["runs"]:
        for c in r["candidates"]:
            lines.append(f"| {r['label']} | {c['step']} | {c['params_nonzero']} | {c['train_return']:.1f} | "
                         f"{c['probe_return_mean']:.1f} | {c['probe_early_terminations']} | "
                         f"{'yes' if c['step'] == r['chosen_step'] else ''} |")
    write_text(args.out.with_suffix(".md"), "\n".join(lines) + "\n")
    print(f"wrote {portable_path(args.out.with_suffix('.md'))} in {res['seconds']:.0f} s")


if __name__ == "__main__":
    main()
