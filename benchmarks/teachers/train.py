"""Train the committed teachers listed in teachers.yaml that are missing, N at a time, resumably.

    python benchmarks/teachers/train.py [--jobs 2] [ENV ...]

Work directories (checkpoints and replay buffers) live under $BPD_RUNS/teachers (default
../bpd-runs beside the repository), so an interrupted session continues where it stopped.
A teacher file appears under benchmarks/teachers/ only when its training has finished.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from bpd.io import bpd_executable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BPD = bpd_executable()


def runs_root() -> Path:
    return Path(os.environ.get("BPD_RUNS", ROOT.parent / "bpd-runs"))


def command(env_id: str, args: dict, out: Path, work: Path) -> list[str]:
    cmd = [BPD, "teacher", "train", "--env", env_id, "--out", str(out), "--work-dir", str(work), "--no-progress"]
    for k, v in args.items():
        cmd += [f"--{k}", str(v)]
    if work.joinpath("config.json").exists():
        cmd.append("--resume")
    return cmd


def file_name(env_id: str, spec: dict) -> str:
    """The committed file's name: the entry's `file`, else ENV.npz."""
    return spec.get("file") or f"{env_id}.npz"


def plan() -> dict:
    """teachers.yaml's entries, by environment id."""
    return yaml.safe_load((HERE / "teachers.yaml").read_text())["teachers"]


def committed_path(env_id: str) -> Path:
    """Where the committed teacher of an environment listed in teachers.yaml lives."""
    return HERE / file_name(env_id, plan()[env_id])


def train_one(env_id: str, spec: dict) -> int:
    """Train into the run directory, then copy the finished file beside this script."""
    args = spec["args"]
    final = HERE / file_name(env_id, spec)
    if final.exists():
        print(f"{env_id}: {final.relative_to(ROOT)} exists, skipped", flush=True)
        return 0
    stem = Path(file_name(env_id, spec)).stem
    out = runs_root() / "teachers" / f"{stem}.npz"
    rc = 0
    if not out.exists():
        work = runs_root() / "teachers" / f"{stem}.work"
        log = runs_root() / "teachers" / f"{stem}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        cmd = command(env_id, args, out, work)
        print(f"{env_id}: {' '.join(cmd[1:])}  (log {log})", flush=True)
        t0 = time.time()
        with open(log, "a") as f:
            rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT)
        print(f"{env_id}: exit {rc} after {time.time() - t0:.0f} s", flush=True)
    if rc == 0:
        shutil.copyfile(out, final)
    return rc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("envs", nargs="*", help="environments to train (default: all in teachers.yaml)")
    ap.add_argument("--jobs", type=int, default=2, help="trainings at once")
    ns = ap.parse_args()
    entries = plan()
    envs = ns.envs or list(entries)
    unknown = [e for e in envs if e not in entries]
    if unknown:
        print(f"train.py: error: not in teachers.yaml: {', '.join(unknown)}", file=sys.stderr)
        return 2
    with ThreadPoolExecutor(ns.jobs) as pool:
        codes = list(pool.map(lambda e: train_one(e, entries[e]), envs))
    return max(codes, default=0)


if __name__ == "__main__":
    sys.exit(main())
