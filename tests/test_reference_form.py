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
