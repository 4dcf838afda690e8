"""The committed teachers' own records: budget, best periodic return and the final check on 10
episodes of seeds disjoint from training, against the floors in teachers.yaml.

    python benchmarks/teachers/report.py      # -> benchmarks/results/teachers.{json,md}
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

from train import file_name, plan  # noqa: E402  (beside this script)

from bpd.io import sha256_file, write_json, write_text  # noqa: E402


def main() -> None:
    rows = []
    for env, spec in plan().items():
        path = HERE / file_name(env, spec)
        if not path.exists():
            rows.append({"env": env, "floor": spec["floor"], "file": None})
            continue
        with np.load(path, allow_pickle=False) as z:
            train = json.loads(str(z["meta"])).get("train", {})
        final = train.get("final", {})
        rets = final.get("returns", [])
        rows.append({"env": env, "floor": spec["floor"], "file": str(path.relative_to(ROOT)),
                     "sha256": sha256_file(path), "algo": train.get("config", {}).get("algo"),
                     "steps": train.get("steps"), "budget": train.get("config", {}).get("steps"),
                     "seconds": train.get("seconds"), "best_periodic_return": train.get("best_train_return"),
                     "final_seeds": final.get("seeds"), "final_mean": final.get("return_mean"),
                     "final_std": final.get("return_std"), "final_min": final.get("return_min"),
                     "final_shortest_episode": final.get("length_min"),
                     "passes_floor": bool(final) and final.get("return_mean", 0) >= spec["floor"],
                     "final_returns": rets})
    write_json(ROOT / "benchmarks" / "results" / "teachers.json", {"command": "python benchmarks/teachers/report.py",
                                                                    "teachers": rows})
    lines = ["# Teachers", "", "`python benchmarks/teachers/report.py` (from the files in benchmarks/teachers/)", "",
             "| environment | algorithm | steps (budget) | training time | best periodic | final check, 10 episodes "
             "(mean +- std, worst) | shortest episode | floor | passes |", "|---|---|---:|---:|---:|---|---:|---:|:-:|"]
    for r in rows:
        if r["file"] is None:
            lines.append(f"| {r['env']} | not trained yet | | | | | | {r['floor']} | no |")
            continue
        lines.append(f"| {r['env']} | {r['algo']} | {r['steps']:,} ({r['budget']:,}) | {r['seconds'] / 3600:.1f} h | "
                     f"{r['best_periodic_return']:.1f} | {r['final_mean']:.1f} +- {r['final_std']:.1f}, "
                     f"{r['final_min']:.1f} | {r['final_shortest_episode']} | {r['floor']} | "
                     f"{'yes' if r['passes_floor'] else 'no'} |")
    lines += ["", "Final check: seeds 50000 + 100 x training seed + i, disjoint from the training evaluations "
              "(10000 + ...) and from the episodes the tables report (seeds 0..29). Training time is the sum over "
              "the (resumed) sessions of a training."]
    write_text(ROOT / "benchmarks" / "results" / "teachers.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
