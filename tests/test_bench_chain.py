"""benchmarks/chain.py: the seed chain of the training, export and device benchmarks."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize("script, stage", [("export_benchmark.py", "run/student.pt"),
                                           ("device_benchmark.py", "export/export.json")])
def test_a_chain_with_no_finished_seed_is_one_line_and_writes_nothing(tmp_path, script, stage):
    """Before, `python benchmarks/export_benchmark.py` without the training benchmark's benchmarks/work/ exited 0
    and wrote export.json with no rows and `all_pass: false` over the committed results (device_benchmark.py
    likewise). Now it is one line naming the missing stage, exit 1, and the results directory is left as it was;
    a seed whose stage is half done (its directory, not its file) does not count."""
    work, out = tmp_path / "work", tmp_path / "out"
    (work / "seed0").mkdir(parents=True)
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--work", str(work), "--out", str(out)],
                       capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 1, p.stderr
    assert p.stderr.strip().splitlines() == [f"no seed directory under {work} holds {stage}: run benchmarks/"
                                             f"{'training' if script.startswith('export') else 'export'}_benchmark.py"
                                             " first (results left as they are)"]
    assert not out.exists()
