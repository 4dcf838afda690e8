"""A run records its teacher and dataset relative to its own directory (issue 40): the commands that read
the run (export, student select) find them from any working directory, and a moved pair of folders still
works."""

import json
import shutil

from tests.conftest import run_bpd


def test_a_run_names_its_inputs_relative_to_itself(tiny_pipeline, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    for f in ("teacher.npz", "dataset.npz"):
        shutil.copyfile(tiny_pipeline / f, work / f)
    run_bpd("distill", "--teacher", "teacher.npz", "--dataset", "dataset.npz", "--out", "runs/r", "--steps", "20",
            "--eval-every", "10", "--eval-episodes", "1", "--hidden", "8", "8", "--critic-hidden", "16", "16",
            "--no-progress", cwd=work)
    cfg = json.loads((work / "runs" / "r" / "config.json").read_text())
    assert cfg["teacher"] == "../../teacher.npz" and cfg["dataset"] == "../../dataset.npz"
    moved = tmp_path / "elsewhere"
    shutil.move(str(work), str(moved))  # the run and its inputs moved together
    other = tmp_path / "cwd"
    other.mkdir()
    run_bpd("export", str(moved / "runs" / "r"), "--out", str(other / "e"), "--episodes", "0", "--parity-samples",
            "200", "--kernel", "generic", cwd=other)
    rep = json.loads((other / "e" / "export_report.json").read_text())
    assert "dataset states" in rep["parity"]["origin"]  # the run's dataset was found
    p = run_bpd("student", "select", str(moved / "runs" / "r"), "--episodes", "1", "--out", str(other / "s.pt"),
                cwd=other)
    assert (other / "s.pt").is_file(), p.stdout
