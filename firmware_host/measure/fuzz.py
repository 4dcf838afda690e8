"""Coverage-guided fuzzing of the C frame parser and the firmware's command handling with libFuzzer
under AddressSanitizer and UndefinedBehaviorSanitizer (clang). Harnesses and their committed seed
corpora live in firmware_host/c/fuzz/.

    python -m firmware_host.measure.fuzz parser --runs 1000000     # build, run, print executions and coverage
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from export.cc import STRICT, compile_to, find_clang

C = Path(__file__).resolve().parents[1] / "c"
FUZZ = C / "fuzz"
CSRC = C / "core"
HARNESSES = {"parser": ["bpd_wire.c", "bpd_msgs.c", "bpd_msgs_dump.c"],  # the dump file: bpd_msg_repack
             "commands": ["bpd_fw.c", "bpd_wire.c", "bpd_msgs.c"]}
FLAGS = [*STRICT, "-g", "-O1", "-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=all"]
RIG = "gym-inverted-pendulum"


def build(name: str, out_dir: Path, rig: str = RIG) -> Path:
    """Compile one harness with the sources it exercises; the command harness gets the rig's
    generated configuration."""
    from firmware_host.rig import load_rig
    from firmware_host.rig.codegen import write_rig_header

    rig_dir = write_rig_header(load_rig(rig), out_dir / "rig").parent
    exe = out_dir / f"fuzz_{name}"
    srcs = [FUZZ / f"fuzz_{name}.c", *(CSRC / f for f in HARNESSES[name])]
    return compile_to(exe, [*FLAGS, f"-I{CSRC}", f"-I{rig_dir}", *map(str, srcs)], f"building fuzz_{name}",
                      find_clang())


@dataclass
class FuzzResult:
    harness: str
    executions: int
    coverage: int       # libFuzzer "cov": covered edges (inline 8-bit counters / pc guards)
    features: int       # libFuzzer "ft"
    corpus: int         # inputs in the corpus at the end
    seconds: float
    exec_per_s: int
    finding: str | None

    def as_dict(self) -> dict:
        return dict(vars(self))


def run(name: str, runs: int, work: Path, seed: int = 1, max_len: int = 512,
        grow_corpus: Path | None = None) -> FuzzResult:
    """Fuzz one harness for `runs` executions from the committed corpus (new inputs go to a scratch
    copy, or to grow_corpus). A crash or sanitizer report is a finding."""
    exe = build(name, work)
    corpus = Path(tempfile.mkdtemp(prefix=f"corpus-{name}-", dir=work))
    for f in (FUZZ / "corpus" / name).glob("*"):
        shutil.copy(f, corpus / f.name)
    dirs = [str(grow_corpus), str(corpus)] if grow_corpus else [str(corpus)]  # the first one receives new inputs
    args = [str(exe), f"-runs={runs}", f"-seed={seed}", f"-max_len={max_len}", "-print_final_stats=1",
            f"-artifact_prefix={work}/", *dirs]
    p = subprocess.run(args, capture_output=True, text=True, cwd=work)
    log = p.stderr
    finding = None
    if p.returncode != 0:
        lines = [l for l in log.splitlines() if "ERROR" in l or "runtime error" in l or "deadly signal" in l]
        finding = (lines[0] if lines else log.strip().splitlines()[-1]) if log.strip() else f"exit {p.returncode}"
    stat = lambda key: int(m.group(1)) if (m := re.search(rf"stat::{key}:\s+(\d+)", log)) else 0
    last = re.findall(r"cov: (\d+) ft: (\d+) corp: (\d+)", log)
    cov, ft, corp = map(int, last[-1]) if last else (0, 0, 0)
    secs = re.search(r"Done \d+ runs in (\d+) second", log)
    return FuzzResult(name, stat("number_of_executed_units"), cov, ft, corp, float(secs.group(1)) if secs else 0.0,
                      stat("average_exec_per_sec"), finding)


def main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m firmware_host.measure.fuzz", description=__doc__.splitlines()[0])
    ap.add_argument("harness", choices=tuple(HARNESSES))
    ap.add_argument("--runs", type=int, default=100000, help="executions")
    ap.add_argument("--grow-corpus", help="directory that receives new inputs (e.g. to refresh the seed corpus)")
    ns = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        r = run(ns.harness, ns.runs, Path(d), grow_corpus=Path(ns.grow_corpus) if ns.grow_corpus else None)
    print(r.as_dict())
    return 1 if r.finding else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
