"""The seed chain the training, export and device benchmarks share: benchmarks/work/seed<k>/ holds
each seed's run, export and measurements; each script takes --work and --out and walks the seeds
whose previous stage has finished."""

from __future__ import annotations

import argparse
from pathlib import Path

HERE = Path(__file__).resolve().parent


def chain_args(doc: str) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--work", type=Path, default=HERE / "work")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--table-only", action="store_true", help="rewrite the .md from the committed .json, run nothing")
    return ap.parse_args()


def command_line(res: dict, json_name: str) -> str:
    """The first line of a results .md: the command that wrote it, and how to rewrite it from its .json."""
    return f"Written by `{res['command'].strip()}` (this file again from its {json_name}: `--table-only`)."


# the script whose stage writes each stage file, named when no seed has one
STAGE_SCRIPT = {"run/student.pt": "training_benchmark.py", "export/export.json": "export_benchmark.py"}


def seeds_with(work: Path, stage_file: str) -> list[Path]:
    """The seed directories under work whose stage_file (e.g. run/student.pt) exists, in order; none is a one-line
    error (exit 1), so the committed results are not overwritten by an empty table."""
    found = [d for d in sorted(work.glob("seed*")) if (d / stage_file).exists()]
    if not found:
        before = STAGE_SCRIPT.get(stage_file, "the previous stage")
        raise SystemExit(f"no seed directory under {work} holds {stage_file}: run benchmarks/{before} first "
                         "(results left as they are)")
    return found
