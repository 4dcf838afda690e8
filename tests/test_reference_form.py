"""benchmarks/reference_form.py: the student and calibration dataset of a cell's export, read from its C."""

import pytest


def test_the_regenerate_line_names_the_student_and_its_dataset(benchmark_script, tmp_path):
    b = benchmark_script("reference_form")
    c = tmp_path / "policy.c"
    c.write_text("/* generated - do not edit.\n * regenerate with: bpd export /r/H/dense-c30/seed0/run/student.pt "
                 "--out /r/H/dense-c30/seed0/export --episodes 0 --dataset /r/datasets/H.noise0.3.npz "
                 "--teacher /t/H.npz\n */\n")
    assert b.regenerate_args(c) == ("/r/H/dense-c30/seed0/run/student.pt", "/r/datasets/H.noise0.3.npz")
    c.write_text("/* generated - do not edit. */\n")
    with pytest.raises(SystemExit, match="no `regenerate with` line"):
        b.regenerate_args(c)


def test_an_old_tree_that_is_not_a_checkout_is_a_one_line_error(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, str(root / "benchmarks" / "reference_form.py"), "--old-tree", str(tmp_path),
                        "--out", str(tmp_path / "out")], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert r.returncode != 0 and r.stderr.strip().splitlines() == [
        f"reference_form: --old-tree {tmp_path}: not a checkout of this project"]
