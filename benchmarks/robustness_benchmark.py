"""Robustness scores of the rigs' controllers (issue 39): the rotary pendulum's swing-up and the desktop
cart-pole's balance, each controller scored on the six categories of training/robustness.py (the
variations from the rig's `robustness` block, 21 per sweep).

    python benchmarks/robustness_benchmark.py [--episodes 3] [--student RIG=EXPORT_DIR ...] [--redo]
    python benchmarks/robustness_benchmark.py --rig RIG --train-students 0 1 2   # the committed students
    python benchmarks/robustness_benchmark.py --table-only     # robustness.md and the plots from the JSON

Controllers: each rig's committed teacher (its numpy actor), the classical controller (the rotary rig's
energy swing-up + LQR as its exported C, the cart-pole's LQR balance in Python: a balance rig starts
upright, so no swing-up) and any BPD student given as an export directory, run as its exported C; an
export with an integer kernel (EXPORT_DIR/int) adds that kernel as a second controller. Every controller
meets the same seeds (episode i of every variation: seed i). A controller already in the JSON under the
same grid and episode count is kept, so students can be added later. Writes
benchmarks/results/robustness.json, robustness.md and robustness/<rig>.png.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bpd.errors import BpdError  # noqa: E402
from bpd.io import portable_path, sha256_file, write_json, write_text  # noqa: E402

RIGS = {
    "rotary-pendulum": {"env": "firmware_host.rig:bpd/rotary-pendulum-v0",
                        "teacher": "benchmarks/teachers/rotary-pendulum.npz",
                        "task": "swing-up from hanging and balance, 5 s at 500 Hz; success: upright within 0.2 rad "
                                "for the last 1 s (the env's own rule)"},
    "desktop-cartpole": {"env": "firmware_host.rig:bpd/desktop-cartpole-v0",
                         "teacher": "benchmarks/teachers/desktop-cartpole.npz",
                         "task": "balance from near upright, 5 s at 200 Hz; success: no limit reached (pole within "
                                 "0.5 rad, cart within 0.2 m) for the whole episode"},
    # InvertedPendulum-v5 as a rig (the same model, observation and action): that task's teacher is its own
    "gym-inverted-pendulum": {"env": "firmware_host.rig:bpd/gym-inverted-pendulum-v0",
                              "teacher": "benchmarks/teachers/InvertedPendulum-v5.npz",
                              "task": "balance from near upright, 40 s at 25 Hz; success: no limit reached (pole "
                                      "within 0.2 rad, cart within 1 m) for the whole episode"},
}
CATEGORY_NAMES = {"model": "model", "velocity_noise": "velocity noise", "torque_noise": "torque noise",
                  "torque_response": "torque response", "delay": "delay", "perturbation": "pushes"}
OUT = ROOT / "benchmarks" / "results"


def rel(p: str | Path) -> str:
    return portable_path(Path(p).resolve())


def portable_arg(a: str) -> str:
    """A command-line argument as results record it: a path (alone or as RIG=PATH) by rel()."""
    key, sep, val = a.rpartition("=")
    if sep and Path(val).is_absolute():
        return f"{key}={rel(val)}"
    return rel(a) if Path(a).is_absolute() else a


def model_key(path: str | Path) -> str | None:
    """What names the model a controller runs, so that its scores join across results files: a model file's
    sha256 (a teacher), or an export's model hash with its kernel's arithmetic (the same weights run by the
    integer kernel are another controller; the float kernels agree within the export's parity tolerance);
    None where the path is neither."""
    p = Path(path)
    if (p / "export.json").is_file():
        info = json.loads((p / "export.json").read_text())
        if not info.get("model_hash"):
            return None
        kind = "integer" if str(info.get("kernel", "")).startswith("integer") else "float"
        return f"model {info['model_hash']} ({kind})"
    return f"file {sha256_file(p)}" if p.is_file() else None


def controllers(rig: str, students: list[str], work: Path) -> dict[str, tuple[str, Any, str | None]]:
    """name -> (source, act, model_key) of every controller of one rig."""
    from bpd_app.evaluate import load_any

    out: dict[str, tuple[str, Any, str | None]] = {}
    t = RIGS[rig]["teacher"]
    out["teacher"] = (t, load_any(ROOT / t).act, model_key(ROOT / t))
    if rig == "rotary-pendulum":
        from firmware_host.rig.classical import export_classical

        cx = work / "classical_export"
        export_classical(rig, cx)
        out["energy+LQR (C)"] = ("bpd classical export --rig rotary-pendulum", load_any(cx).act, model_key(cx))
    else:
        from firmware_host.rig.classical import CartPoleLqr

        out["LQR (Python)"] = ("firmware_host.rig.classical.CartPoleLqr", CartPoleLqr(rig), None)
    for s in students:
        p = Path(s).resolve()
        name = p.parent.name if p.name == "export" else p.name
        out[f"BPD {name} (float C)"] = (rel(p), load_any(p).act, model_key(p))
        if (p / "int" / "export.json").is_file():
            out[f"BPD {name} (integer C)"] = (rel(p / "int"), load_any(p / "int").act, model_key(p / "int"))
    return out


def kept(old: dict | None, grid: dict, episodes: int, key: str | None) -> bool:
    """Whether a controller's scores in the JSON stand: the same grid and episode count, and the same model
    where both record one (a controller scored before keys were recorded is taken by its name)."""
    if not old or old["grid"] != grid or old["episodes_per_variation"] != episodes:
        return False
    return old.get("model_key") is None or key is None or old["model_key"] == key


def say(where: str, what: str) -> None:
    print(f"{where} | {what}", flush=True)


def score_rig(rig: str, students: list[str], episodes: int, res: dict, redo: bool, command: str,
              work: Path) -> None:
    from training.envs import make_env
    from training.robustness import grid_for, robustness

    env_id = RIGS[rig]["env"]
    probe = make_env(env_id)
    grid = grid_for(probe)
    probe.close()
    entry = res["rigs"].setdefault(rig, {"env_id": env_id, "controllers": {}})
    entry |= {"env_id": env_id, "task": RIGS[rig]["task"], "grid": grid.to_dict()}
    for name, (source, act, key) in controllers(rig, students, work).items():
        old = entry["controllers"].get(name)
        if not redo and kept(old, grid.to_dict(), episodes, key):
            print(f"{rig} | {name}: kept ({old['overall']:.3f})", flush=True)
            continue
        t0 = time.time()
        r = robustness(lambda: make_env(env_id), act, grid, episodes, 0,
                       progress=functools.partial(say, f"{rig} | {name}"))
        entry["controllers"][name] = {"source": source, "model_key": key, "command": command,
                                      "seconds": round(time.time() - t0, 1)} | r
        print(f"{rig} | {name}: overall {r['overall']:.3f} in {time.time() - t0:.0f} s", flush=True)


def grid_line(g: dict) -> str:
    def many(v: list) -> str:
        return ", ".join(f"{x:g}" for x in v)

    ticks = round(g["delay_s"] / g["period_s"])

    return (f"{g['variations']} per sweep; model: masses and inertias x(1 +- {g['mass']:g}), damping +- "
            f"[{many(g['damping'])}] and Coulomb friction +- [{many(g['coulomb'])}] on "
            f"{', '.join(g['joints']) if g['joints'] else 'every joint but a floating base'}"
            f" (four sweeps); velocity noise sigma up to [{many(g['velocity_noise'])}]; torque noise sigma up to "
            f"[{many(g['torque_noise'])}]; torque response k {g['response'][0]:g} to {g['response'][1]:g}; delay up "
            f"to {g['delay_s'] * 1000:g} ms ({ticks} tick{'' if ticks == 1 else 's'}); pushes up to "
            f"{g['push']:g} on {g['push_joint']} for {g['push_duration_s'] * 1000:g} ms at "
            f"{', '.join(f'{t:g}' for t in g['push_times_s'])} s")


def markdown(res: dict) -> str:
    cats = list(CATEGORY_NAMES)
    commands = sorted({c["command"] for r in res["rigs"].values() for c in r["controllers"].values()})
    lines = ["# Robustness of the rigs' controllers", "",
             "Made by " + " and ".join(f"`{c}`" for c in commands) + " (the tables and plots: "
             "`python benchmarks/robustness_benchmark.py --table-only`).", "",
             "Six categories after the RealAIGym double-pendulum benchmark (training/robustness.py), their sizes "
             "from each rig's `robustness` block: a category's score is the share of its episodes that succeed, "
             "the overall score the mean of the six. The model category holds four sweeps (masses, inertias, "
             "damping, Coulomb friction), the others one each. Every controller meets the same seeds. The BPD "
             "students (`--train-students 0 1 2`, one per seed; the script's train_students gives the recipe) run "
             "as their exported C: the float kernel and the integer kernel of the same student.", ""]
    for rig, r in res["rigs"].items():
        ctrl = r["controllers"]
        eps = sorted({c["episodes_per_variation"] for c in ctrl.values()})
        lines += [f"## {rig}", "", f"Task: {r['task']}.", "", f"Variations: {grid_line(r['grid'])}.", "",
                  f"Episodes per variation: {', '.join(map(str, eps))} (seeds 0 to {max(eps) - 1}); "
                  f"{sum(len(c['variations']) for c in next(iter(ctrl.values()))['categories'].values())} "
                  "variations.", "",
                  "| controller | overall | " + " | ".join(CATEGORY_NAMES[c] for c in cats)
                  + " | nominal success | minutes |", "|---|---|" + "---|" * len(cats) + "---|---|"]
        for name, c in sorted(ctrl.items(), key=lambda kv: -kv[1]["overall"]):
            lines.append(f"| {name} | **{c['overall']:.3f}** | "
                         + " | ".join(f"{c['categories'][k]['score']:.3f}" for k in cats)
                         + f" | {c['nominal']['success'] * 100:.0f} % | {c['seconds'] / 60:.1f} |")
        lines += summary(ctrl, cats)
        lines += ["", f"![success against each variation](robustness/{rig}.png)", ""]
    return "\n".join(lines)


def seed_spread(ctrl: dict) -> dict[str, dict]:
    """Per kind of student (the controllers named "BPD NAME-sSEED (KIND)", grouped by KIND), over its seeds:
    the overall score's and each category's mean, population std and worst seed, in seed order."""
    kinds: dict[str, list[tuple[int, dict]]] = {}
    for name, c in ctrl.items():
        m = re.fullmatch(r"BPD (.+)-s(\d+) \((.+)\)", name)
        if m:
            kinds.setdefault(f"BPD students ({m.group(3)})", []).append((int(m.group(2)), c))
    def spread(vals: list[float], seeds: list[int]) -> dict:
        a = np.asarray(vals, np.float64)
        return {"mean": float(a.mean()), "std": float(a.std()), "worst": float(a.min()),
                "worst_seed": seeds[int(a.argmin())]}

    out = {}
    for kind, members in sorted(kinds.items()):
        members.sort(key=lambda sc: sc[0])
        seeds = [s for s, _ in members]
        out[kind] = {"seeds": seeds, "overall": spread([c["overall"] for _, c in members], seeds)} | {
            k: spread([c["categories"][k]["score"] for _, c in members], seeds) for k in CATEGORY_NAMES}
    return out


def summary(ctrl: dict, cats: list[str]) -> list[str]:
    """seed_spread as a table: each score's mean +- population std and the worst seed's; empty where no
    kind has two seeds."""
    kinds = seed_spread(ctrl)
    if not any(len(v["seeds"]) > 1 for v in kinds.values()):
        return []
    out = ["", "Students over their seeds: mean +- std (population) and the worst seed.", "",
           "| students | seeds | overall | " + " | ".join(CATEGORY_NAMES[c] for c in cats) + " |",
           "|---|---|---|" + "---|" * len(cats)]

    def cell(s: dict) -> str:
        return f"{s['mean']:.3f} +- {s['std']:.3f}; {s['worst']:.3f} (s{s['worst_seed']})"

    for kind, k in kinds.items():
        out.append(f"| {kind} | {len(k['seeds'])} | {cell(k['overall'])} | " + " | ".join(cell(k[c]) for c in cats)
                   + " |")
    return out


def train_students(rig: str, seeds: list[int], work: Path) -> list[str]:
    """The BPD students the committed scores were made with, one export directory per seed (a stage whose
    output exists is reused): the rotary pendulum's by the rotary benchmark's recipe (its distill_students:
    200,000 steps collected, 60,000 distillation steps, gamma 0.998, KL weight 0.1, the sparsest student
    within 1 % of the teacher on the nominal rig), the cart-poles' (desktop-cartpole, gym-inverted-pendulum) by
    `bpd collect --noise 0.1` on the rig's env and `bpd distill` with their defaults. Each exported twice over:
    the float kernel the export's float rule ships (--episodes 0) and the integer kernel beside it (--int:
    EXPORT_DIR/int)."""
    sys.path.insert(0, str(HERE))
    from rotary_benchmark import bpd, distill_students

    teacher = str(ROOT / RIGS[rig]["teacher"])
    out = []
    for seed in seeds:
        if rig == "rotary-pendulum":
            distill_students(teacher, [seed], work, 60000, 200000, 0.1)
            student = work / f"student-s{seed}" / "run" / "student-keep99.pt"
        else:
            w = work / f"student-s{seed}"
            w.mkdir(parents=True, exist_ok=True)
            if not (w / "dataset.npz").exists():
                bpd("collect", "--teacher", teacher, "--env", RIGS[rig]["env"], "--out", str(w / "dataset.npz"),
                    "--noise", "0.1", "--seed", str(seed), "--no-progress")
            if not (w / "run" / "student.pt").exists():
                bpd("distill", "--teacher", teacher, "--dataset", str(w / "dataset.npz"), "--out", str(w / "run"),
                    # the paper's BPD, as committed
                    "--no-unit-gates", "--finetune", "0.0", "--no-pair-partners", "--kl-warmup", "none",
                    "--seed", str(seed), "--no-progress", *(["--resume"] if (w / "run").exists() else []))
            student = w / "run"
        d = work / "exports" / f"{rig}-s{seed}"
        if not (d / "int" / "export.json").exists():
            bpd("export", str(student), "--out", str(d), "--episodes", "0", "--int")
        out.append(str(d))
    return out


def render(res: dict, out: Path) -> None:
    from training.robustness import plot

    res["markdown"] = markdown(res)
    write_json(out / "robustness.json", res)
    write_text(out / "robustness.md", res["markdown"])
    for rig, r in res["rigs"].items():
        plot(r["controllers"], out / "robustness" / f"{rig}.png", f"{rig}: success against each variation")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=3, help="episodes per variation")
    ap.add_argument("--train-students", type=int, nargs="*", default=[], metavar="SEED",
                    help="train, export and score a BPD student of each rig scored for each seed (train_students)")
    ap.add_argument("--student", action="append", default=[], metavar="RIG=EXPORT_DIR",
                    help="a BPD student's export directory for a rig (repeatable)")
    ap.add_argument("--rig", action="append", choices=list(RIGS), help="score only these rigs")
    ap.add_argument("--redo", action="store_true", help="score again the controllers already in the JSON")
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work" / "robustness")
    ap.add_argument("--out", type=Path, default=OUT, help="results directory")
    ap.add_argument("--table-only", action="store_true", help="rewrite robustness.md and the plots from the JSON")
    args = ap.parse_args()
    path = args.out / "robustness.json"
    res = json.loads(path.read_text()) if path.is_file() else {"rigs": {}}
    if not args.table_only:
        students: dict[str, list[str]] = {r: [] for r in RIGS}
        for s in args.student:
            rig, sep, d = s.partition("=")
            if not sep or rig not in RIGS:
                raise SystemExit(f"robustness_benchmark: error: --student wants RIG=EXPORT_DIR, RIG one of "
                                 f"{', '.join(RIGS)} (got {s!r})")
            students[rig].append(d)
        for rig in args.rig or list(RIGS):
            students[rig] += train_students(rig, args.train_students, args.work / rig)
        argv = " ".join(portable_arg(a) for a in sys.argv[1:])
        command = f"python benchmarks/robustness_benchmark.py {argv}".strip()
        try:
            for rig in args.rig or list(RIGS):
                score_rig(rig, students[rig], args.episodes, res, args.redo, command, args.work / rig)
                render(res, args.out)  # after every rig: a long run keeps what it has
        except BpdError as e:
            raise SystemExit(f"robustness_benchmark: error: {e}") from None
    render(res, args.out)
    print(res["markdown"])


if __name__ == "__main__":
    main()
