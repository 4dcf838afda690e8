"""Distillation steps per second on each torch device this machine has (`bpd distill --device`).

    python benchmarks/device_throughput.py [--updates 300] [--rounds 5]

BPD's gradient step (benchmarks/distill_throughput.py's synthetic batch of 256, each benchmark
environment's sizes, the default networks) timed on the CPU (one thread, as the runner's cells train)
and on every CUDA device torch sees, interleaved round by round (medians over rounds; on CUDA each
timed block ends with a synchronise). Rows are kept per machine and device, so a machine with a GPU
adds its rows beside the CPU rows measured elsewhere. Writes benchmarks/results/device_throughput.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from distill_throughput import ENVS, batch  # noqa: E402

from bpd.io import write_json, write_text  # noqa: E402
from training.distill import BPDTrainer, DistillConfig  # noqa: E402
from training.envs import env_dims  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "device_throughput"
COMMAND = "python benchmarks/device_throughput.py"


def devices() -> list[torch.device]:
    return [torch.device("cpu")] + [torch.device("cuda", i) for i in range(torch.cuda.device_count())]


def rate(dev: torch.device, obs_dim: int, act_dim: int, updates: int) -> float:
    torch.manual_seed(0)
    tr = BPDTrainer(DistillConfig(teacher="", dataset=""), obs_dim, act_dim, 100_000, dev)
    b = {k: v.to(dev) for k, v in batch(obs_dim, act_dim).items()}
    for _ in range(10):
        tr.update(b)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    for _ in range(updates):
        tr.update(b)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return updates / (time.perf_counter() - t0)


def markdown(res: dict) -> str:
    L = [f"Written by `{res['command']}` (this file again from its .json: `--table-only`).", "",
         "# BPD gradient steps per second, per device", "",
         "Synthetic batch of 256 at each environment's sizes, default student and critics; median over "
         "interleaved rounds. CPU rows: one torch thread (as the runner's cells); the machine's load when "
         "measured is beside each row (a load above its cores means other work shared them, and the figure "
         "is low by about that ratio). A machine with a GPU adds its rows by running the command.", "",
         "| machine | device | load (1 min) / cores | " + " | ".join(ENVS) + " |",
         "|---|---|---|" + "---|" * len(ENVS)]
    for r in res["rows"]:
        L.append(f"| {r['machine']} | {r['device']} ({r['device_name']}) | {r.get('load_average_1min', '-')} / "
                 f"{r.get('cores', '-')} | "
                 + " | ".join(f"{r['steps_per_s'][e]:.0f}" for e in ENVS if e in r["steps_per_s"]) + " |")
    return "\n".join(L) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--updates", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--table-only", action="store_true", help="rewrite the .md from the .json")
    a = ap.parse_args()
    path = OUT.with_suffix(".json")
    old = json.loads(path.read_text()) if path.is_file() else {"rows": []}
    if not a.table_only:
        torch.set_num_threads(1)
        machine = f"{platform.machine()} {platform.processor() or ''}".strip()
        devs = devices()
        samples: dict[tuple[str, str], list[float]] = {}
        for _ in range(a.rounds):
            for e in ENVS:
                od, ad = env_dims(e)
                for d in devs:
                    samples.setdefault((str(d), e), []).append(rate(d, od, ad, a.updates))
        rows = [{"machine": machine, "device": str(d),
                 "device_name": torch.cuda.get_device_name(d) if d.type == "cuda" else "CPU, 1 thread",
                 "torch": torch.__version__, "updates": a.updates, "rounds": a.rounds,
                 "load_average_1min": round(os.getloadavg()[0], 2), "cores": os.cpu_count(),
                 "steps_per_s": {e: statistics.median(samples[(str(d), e)]) for e in ENVS}} for d in devs]
        new = {(x["machine"], x["device"]) for x in rows}
        kept = [r for r in old["rows"] if (r["machine"], r["device"]) not in new]
        old = {"command": COMMAND, "rows": kept + rows}
    write_json(path, old)
    write_text(OUT.with_suffix(".md"), markdown(old))
    print(markdown(old))


if __name__ == "__main__":
    main()
