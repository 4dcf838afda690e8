"""benchmarks/idp_starts.py: the command its results record runs again from the repository."""

import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_recorded_command_names_each_run_where_it_is(benchmark_script, tmp_path, monkeypatch):
    """Before, runs outside the repository were recorded by their bare names: idp_starts.md read
    `python benchmarks/idp_starts.py run run run seed0 seed1 seed2 ...`, three directories called `run` that are not
    there. Now a run is named relative to the repository, as $BPD_RUNS/... or as ../bpd-runs/... (the default run
    root), and the words survive the shell."""
    st = benchmark_script("idp_starts")
    monkeypatch.setenv("BPD_RUNS", str(tmp_path))
    runs = [ROOT / "benchmarks" / "results" / "idp-data", tmp_path / "benchmark" / "bpd" / "seed0" / "run",
            ROOT.parent / "bpd-runs" / "starts" / "seed1"]
    cmd = st.command(runs, ["defaults seed 0", "it's seed 1"], st.TEACHER, 30, tmp_path / "out" / "idp")
    assert cmd.startswith("python benchmarks/idp_starts.py benchmarks/results/idp-data "
                          "$BPD_RUNS/benchmark/bpd/seed0/run ../bpd-runs/starts/seed1 --label 'defaults seed 0' ")
    assert shlex.split(cmd)[5:] == ["--label", "defaults seed 0", "--label", "it's seed 1", "--episodes", "30",
                                    "--out", "$BPD_RUNS/out/idp"]


def _run(d: Path, files=("student.pt", "candidates.pt", "config.json")) -> Path:
    d.mkdir(parents=True)
    for f in files:
        (d / f).write_bytes(b"")
    return d


def test_a_run_the_command_cannot_name_is_a_one_line_error(benchmark_script, tmp_path, monkeypatch, capsys):
    """A run outside the repository and the run roots, or a directory that is not a run, is refused before any
    episode runs and before anything is written."""
    st = benchmark_script("idp_starts")
    monkeypatch.delenv("BPD_RUNS", raising=False)
    out = tmp_path / "out" / "idp"
    cases = ((_run(tmp_path / "a" / "run"), "outside the repository and the experiment run root"),
             (_run(tmp_path / "b", ("student.pt",)), "not a distillation run (no candidates.pt, config.json)"))
    for run, message in cases:
        assert st.main([str(run), "--out", str(out)]) == 1
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
    assert not out.parent.exists()
