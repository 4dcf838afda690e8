"""Where double-pendulum students fall: early terminations of every evaluated student of a run.

    python benchmarks/idp_starts.py RUN_DIR [RUN_DIR ...] [--label LABEL ...] [--episodes 60]

For each distillation run it reloads every student the run evaluated during training (candidates.pt),
collapses it and runs it on probe episodes whose seeds (300000 + i) are disjoint from the reporting
seeds (0 .. 99999), the periodic evaluations (100000 + 1000 * run seed + i) and the selection seeds
(200000 + 1000 * run seed + i), so the probe chooses nothing. The teacher runs the same episodes. The
question it answers: are a run's early terminations a matter of which student the selection rule
hands over (then some evaluated student would not fall), or of every student the run produced?

Writes benchmarks/results/idp_starts.json and .md (paths recorded relative to the repository). The command they
record names each run as one can give it again from the repository: relative to it, $BPD_RUNS/... under the
experiment run root, or ../bpd-runs/... under the default one; a run elsewhere is refused (its bare name, which the
first results recorded as `run run run seed0 ...`, names nothing). The .md says what made each run (its dataset,
seed and steps). The committed results probed the benchmark plan's three InvertedDoublePendulum-v5 bpd runs
(`bpd experiment run benchmarks/plans/benchmark.yaml`) and three `bpd distill` runs of the same options on a dataset
collected with `bpd collect --episode-steps 100` (1003 starts instead of 100).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from bpd.errors import BpdError  # noqa: E402
from bpd.io import portable_path, read_json, write_json, write_text  # noqa: E402

ENV = "InvertedDoublePendulum-v5"
PROBE_SEED = 300_000
KEYS = ("obs_mean", "obs_std", "action_low", "action_high")
TEACHER, OUT, EPISODES = ROOT / "benchmarks" / "teachers" / f"{ENV}.npz", HERE / "results" / "idp_starts", 60
RUN_FILES = ("student.pt", "candidates.pt", "config.json")


def run_name(run: Path) -> str:
    """A run directory as the recorded command names it, so that the command runs again from the repository."""
    q = run.resolve()
    bases = [(ROOT, ""), *([(Path(os.environ["BPD_RUNS"]).resolve(), "$BPD_RUNS/")] if os.environ.get("BPD_RUNS")
                           else []), ((ROOT.parent / "bpd-runs").resolve(), "../bpd-runs/")]
    for base, prefix in bases:
        if q.is_relative_to(base):
            return prefix + q.relative_to(base).as_posix()
    raise BpdError(f"{run}: outside the repository and the experiment run root; set BPD_RUNS to a directory that "
                   "holds it, so that the results can name it")


def command(runs: list[Path], labels: list[str], teacher: Path, episodes: int, out: Path) -> str:
    """The command line the results record: the runs as run_name gives them, the labels, the options that differ
    from the defaults (--out, --teacher as portable paths)."""
    words = ["python", "benchmarks/idp_starts.py", *(run_name(r) for r in runs)]
    words += [w for x in labels for w in ("--label", x)]
    if teacher.resolve() != TEACHER.resolve():
        words += ["--teacher", portable_path(teacher.resolve())]
    if episodes != EPISODES:
        words += ["--episodes", str(episodes)]
    if out.resolve() != OUT.resolve():
        words += ["--out", portable_path(out.resolve())]
    return " ".join(map(shell_word, words))


def shell_word(w: str) -> str:
    """A word quoted for the shell, $BPD_RUNS left for the shell to expand."""
    if w.startswith("$BPD_RUNS/"):
        rest = w[len("$BPD_RUNS/"):]
        return w if shlex.quote(rest) == rest else '"$BPD_RUNS"/' + shlex.quote(rest)
    return shlex.quote(w)


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
    return {"run": run_name(run), "dataset": portable_path(cfg.get("dataset", "")), "seed": cfg.get("seed"),
            "steps": cfg.get("steps"), "chosen_step": (summary.get("selection") or {}).get("chosen", {}).get("step"),
            "candidates": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--label", action="append", default=[], help="a label per run, in order (default: the path)")
    ap.add_argument("--teacher", type=Path, default=TEACHER)
    ap.add_argument("--episodes", type=int, default=EPISODES)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    try:
        probe(args)
    except BpdError as e:
        print(f"idp_starts: error: {e}", file=sys.stderr)
        return 1
    return 0


def probe(args: argparse.Namespace) -> None:
    if args.episodes < 1:
        raise BpdError("--episodes must be at least 1")
    if len(args.label) > len(args.runs):
        raise BpdError(f"{len(args.label)} labels for {len(args.runs)} runs")
    for run in args.runs:  # checked before any episode runs
        missing = [f for f in RUN_FILES if not (run / f).is_file()]
        if missing:
            raise BpdError(f"{run}: not a distillation run (no {', '.join(missing)})")
    cmd = command(args.runs, args.label, args.teacher, args.episodes, args.out)
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
    res["command"] = cmd
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out.with_suffix(".json"), res)
    lines = [f"# {ENV}: early terminations of every evaluated student", "",
             f"`{res['command']}`", "",
             f"{args.episodes} probe episodes (seeds {res['probe_seeds'][0]}..{res['probe_seeds'][1]}, disjoint from "
             "reporting, periodic and selection seeds). Teacher: return "
             f"{res['teacher']['return_mean']:.1f}, {res['teacher']['early_terminations']} early terminations.", "",
             "The runs (`bpd distill` on a dataset, as each run's config.json records it):", "",
             *(f"- {r['label']}: `{r['run']}`, dataset {r['dataset']}, seed {r['seed']}, {r['steps']} steps"
               for r in res["runs"]), "",
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
    sys.exit(main())
