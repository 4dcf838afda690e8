"""Fuzz benchmark: libFuzzer (ASan + UBSan) on the C frame parser and on the firmware's command
handling, from the committed seed corpora, at least 10^7 executions in all.

    python benchmarks/fuzz_benchmark.py [--runs 5000000]

Writes benchmarks/results/fuzz.json and fuzz.md: executions, covered edges (libFuzzer `cov`),
features (`ft`), corpus size and executions per second per harness, and any finding.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bpd.io import portable_path, write_json, write_text  # noqa: E402
from firmware_host.measure.fuzz import HARNESSES, run  # noqa: E402

RUNS, OUT = 5_000_000, HERE / "results"


def command(runs: int, out: Path) -> str:
    """The command line the results record: the options that differ from the defaults, --out as a portable path
    (it recorded argv as typed, so a machine's absolute --out went into fuzz.json)."""
    cmd = "python benchmarks/fuzz_benchmark.py"
    if runs != RUNS:
        cmd += f" --runs {runs}"
    if out.resolve() != OUT.resolve():
        cmd += f" --out {portable_path(out.resolve())}"
    return cmd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=RUNS, help="executions per harness")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    cmd = command(args.runs, args.out)
    results = []
    with tempfile.TemporaryDirectory() as d:
        for name in HARNESSES:
            work = Path(d) / name
            work.mkdir()
            r = run(name, args.runs, work)
            print(r.as_dict(), flush=True)
            results.append(r.as_dict())
    clang = subprocess.run(["clang", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    total = sum(r["executions"] for r in results)
    write_json(args.out / "fuzz.json", {"command": cmd,
                                        "clang": clang, "machine": platform.platform(), "total_executions": total,
                                        "harnesses": results})
    lines = ["# Fuzzing the wire parser and the firmware's command handling", "",
             f"libFuzzer with AddressSanitizer and UndefinedBehaviorSanitizer ({clang}), seed corpora from "
             f"`firmware_host/c/fuzz/corpus/`, `{cmd}`.", "",
             "| harness | executions | exec/s | covered edges | features | corpus | finding |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['harness']} | {r['executions']:,} | {r['exec_per_s']:,} | {r['coverage']} "
                     f"| {r['features']} | {r['corpus']} | {r['finding'] or 'none'} |")
    lines += ["", f"Total: {total:,} executions."]
    write_text(args.out / "fuzz.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
