"""The project's bad-input table run whole: how many bad inputs it tries and the share that keeps the promise.

The promise (tests/test_bad_input.py): bad input gets one line `bpd: error: ...` and a non-zero exit other
than 70 (never a traceback), and every file that existed before is left byte for byte, nothing new left
behind. Each row of the table is one bad input; a row keeps the promise when its test passes. The tests
beside the table (what a failure leaves, paths, warnings, prefixes) are listed with their outcome.

    python benchmarks/bad_input_benchmark.py     # writes benchmarks/results/bad_input.json and .md
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMAND = "python benchmarks/bad_input_benchmark.py"
OUT = ROOT / "benchmarks" / "results"
# the tests beside the table, by the class of issue 40 they stand for
PROMISE_TESTS = {
    "test_failed_multitask_export_leaves_the_previous_export_byte_for_byte": "7 left behind or changed on failure",
    "test_failed_multitask_train_leaves_no_run_directory": "7 left behind or changed on failure",
    "test_failed_firmware_build_and_rig_sim_leave_no_directory": "7 left behind or changed on failure",
    "test_failed_bench_leaves_no_results_directory": "7 left behind or changed on failure",
    "test_an_export_names_its_source_from_any_working_directory": "9 relative paths recorded",
    "test_a_rig_name_never_reaches_c_unchecked": "1 strings from the rig YAML reaching generated C",
    "test_a_library_deprecation_warning_never_precedes_the_error_line": "10 warning and doubled prefix",
    "test_hil_run_quotes_the_simulated_rigs_error_with_one_prefix": "10 warning and doubled prefix",
}


def run_table() -> tuple[dict[str, bool], dict[str, bool], float]:
    """pytest over tests/test_bad_input.py in one process; (table row -> passed, other test -> passed, seconds)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "junit.xml"
        t0 = time.time()
        subprocess.run([sys.executable, "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider", "-q",
                        "tests/test_bad_input.py", f"--junitxml={report}"], cwd=ROOT, check=False)
        seconds = time.time() - t0
        rows, others = {}, {}
        for tc in ET.parse(report).getroot().iter("testcase"):
            ok = not any(child.tag in ("failure", "error", "skipped") for child in tc)
            name = tc.get("name", "")
            if name.startswith("test_bad_input["):
                rows[name[len("test_bad_input["):-1]] = ok
            else:
                others[name] = ok
    return rows, others, seconds


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from tests.test_bad_input import CASE_CLASS, CASES

    rows, others, seconds = run_table()
    names = [c[0] for c in CASES]
    kept = [n for n in names if rows.get(n)]
    broken = [n for n in names if not rows.get(n)]
    by_class: dict[str, dict[str, int]] = {}
    for cls, n in sorted(Counter(CASE_CLASS[n] for n in names).items()):
        by_class[cls] = {"cases": n, "keep_the_promise": sum(1 for x in kept if CASE_CLASS[x] == cls)}
    result = {"command": COMMAND, "table": "tests/test_bad_input.py", "cases": len(names),
              "keep_the_promise": len(kept), "share": round(len(kept) / max(len(names), 1), 4),
              "broken": broken, "by_class": by_class, "seconds": round(seconds, 1),
              "other_tests": {k: {"passed": v, "class": PROMISE_TESTS.get(k, "earlier rounds")}
                              for k, v in sorted(others.items())}}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "bad_input.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    md = ["# Bad input: the project's table", "",
          f"Written by `{COMMAND}` (pytest over tests/test_bad_input.py, one process, {seconds:.0f} s).", "",
          f"**{len(kept)} of {len(names)} bad inputs keep the promise ({100 * result['share']:.1f} %)**: one line "
          "`bpd: error: ...`, a non-zero exit other than 70, every file that existed before left byte for byte "
          "and nothing new left behind.", "",
          "| class (issue 40; earlier rounds before it) | cases | keep the promise |", "|---|---:|---:|"]
    md += [f"| {cls} | {v['cases']} | {v['keep_the_promise']} |" for cls, v in by_class.items()]
    md += ["", "Tests beside the table (what a failure leaves, paths, warnings):", "",
           "| test | class | passed |", "|---|---|---|"]
    md += [f"| {k} | {v['class']} | {'yes' if v['passed'] else 'NO'} |" for k, v in result["other_tests"].items()]
    if broken:
        md += ["", "Bad inputs that break the promise:", ""] + [f"- {n}" for n in broken]
    (OUT / "bad_input.md").write_text("\n".join(md) + "\n")
    print(f"{len(kept)} of {len(names)} bad inputs keep the promise ({100 * result['share']:.1f} %); "
          f"{sum(others.values())} of {len(others)} other tests pass -> {OUT / 'bad_input.md'}")
    return 0 if not broken and all(others.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
