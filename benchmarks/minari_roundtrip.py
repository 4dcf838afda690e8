"""The same teacher's rollout distilled from a .npz and from a Minari dataset (issue 36's round trip).

    python benchmarks/minari_roundtrip.py [--seeds 0 1 2] [--steps 5000] [--episodes 30]

For each seed: `bpd collect` of the committed InvertedPendulum-v5 teacher into a .npz and, with the same
seed, into a Minari dataset (`--format minari`); `bpd distill` from each with the same options and seed;
`bpd evaluate` of both students on the reporting seeds (30 episodes from seed 0). The two datasets hold
the same arrays bit for bit (tests/test_minari.py), so the students are expected to be equal; the
committed figures say whether they are. Writes benchmarks/results/minari_roundtrip.{json,md}; the
datasets and runs live in a temporary work directory (--work keeps them).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402
from hil_benchmark import bpd  # noqa: E402  (the `bpd` command as a user runs it)

from bpd.io import write_json, write_text  # noqa: E402
from training.student import load_student  # noqa: E402

TEACHER = "benchmarks/teachers/InvertedPendulum-v5.npz"
OUT = ROOT / "benchmarks" / "results" / "minari_roundtrip"


def markdown(res: dict) -> str:
    L = [f"Written by `{res['command']}` (this file again from its .json: `--table-only`).", "",
         "# A student distilled from a Minari dataset against one from the .npz of the same rollout", "",
         f"InvertedPendulum-v5, teacher {res['teacher']}, {res['collect_steps']} collected steps (noise as "
         f"`bpd collect`'s default), {res['distill_steps']} distillation steps, {res['episodes']} reporting "
         "episodes from seed 0. Mean +- population std over seeds.", "",
         "| seed | .npz: return | Minari: return | .npz: nonzero | Minari: nonzero | same weights |",
         "|---|---|---|---|---|---|"]
    for r in res["rows"]:
        L.append(f"| {r['seed']} | {r['npz']['return_mean']:.1f} | {r['minari']['return_mean']:.1f} | "
                 f"{r['npz']['params_nonzero']} | {r['minari']['params_nonzero']} | {'yes' if r['same'] else 'no'} |")
    s = res["summary"]
    L += ["", f".npz: {s['npz_mean']:.1f} +- {s['npz_std']:.1f}; Minari: {s['minari_mean']:.1f} +- "
          f"{s['minari_std']:.1f}; the same student weights on {s['same']} of {len(res['rows'])} seeds."]
    return "\n".join(L) + "\n"


def command(ap: argparse.ArgumentParser, a: argparse.Namespace) -> str:
    """The command that wrote the results: the script with every option that differs from its default (the work
    directory, where runs go, changes no figure)."""
    out = ["python benchmarks/minari_roundtrip.py"]
    for k in ("seeds", "steps", "collect_steps", "episodes"):
        v = getattr(a, k)
        if v != ap.get_default(k):
            out.append(f"--{k.replace('_', '-')} " + (" ".join(map(str, v)) if isinstance(v, list) else str(v)))
    return " ".join(out)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=5000, help="distillation steps")
    ap.add_argument("--collect-steps", type=int, default=20000)
    ap.add_argument("--episodes", type=int, default=30)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--table-only", action="store_true")
    return ap


def main() -> None:
    ap = parser()
    a = ap.parse_args()
    if a.table_only:
        res = json.loads(OUT.with_suffix(".json").read_text())
    else:
        work = a.work or Path(tempfile.mkdtemp(prefix="bpd-minari-"))
        os.environ["MINARI_DATASETS_PATH"] = str(work / "minari")  # the `bpd` children's Minari store
        rows = []
        for seed in a.seeds:
            ds_npz, ds_id = work / f"d{seed}.npz", f"bpd/roundtrip-s{seed}-v0"
            teacher = str(ROOT / TEACHER)
            common = ["--teacher", teacher, "--steps", str(a.collect_steps), "--seed", str(seed), "--no-progress"]
            bpd("collect", *common, "--out", str(ds_npz))
            bpd("collect", *common, "--out", ds_id, "--format", "minari")
            row: dict = {"seed": seed}
            for name, ds in (("npz", str(ds_npz)), ("minari", f"minari:{ds_id}")):
                run = work / f"{name}{seed}"
                # without the warm-up (the defaults the committed results ran under): --steps steps exactly
                bpd("distill", "--teacher", teacher, "--dataset", ds, "--out", str(run), "--steps", str(a.steps),
                    "--seed", str(seed), "--no-progress", "--kl-warmup", "none")
                ev = json.loads(bpd("evaluate", str(run), "--episodes", str(a.episodes), "--seed", "0", "--json"))
                row[name] = {k: ev[k] for k in ("return_mean", "return_std", "params_nonzero")}
            a_s, b_s = (load_student(work / f"{n}{seed}" / "student.pt")[0].state_dict() for n in ("npz", "minari"))
            row["same"] = a_s.keys() == b_s.keys() and all(torch.equal(a_s[k], b_s[k]) for k in a_s)
            rows.append(row)
            print(row, flush=True)
        rets = {k: [r[k]["return_mean"] for r in rows] for k in ("npz", "minari")}
        res = {"command": command(ap, a), "teacher": TEACHER, "collect_steps": a.collect_steps,
               "distill_steps": a.steps, "episodes": a.episodes, "rows": rows,
               "summary": {"npz_mean": statistics.mean(rets["npz"]), "npz_std": statistics.pstdev(rets["npz"]),
                           "minari_mean": statistics.mean(rets["minari"]),
                           "minari_std": statistics.pstdev(rets["minari"]), "same": sum(r["same"] for r in rows)}}
        write_json(OUT.with_suffix(".json"), res)
    write_text(OUT.with_suffix(".md"), markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
