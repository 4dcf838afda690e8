"""`bpd bench` on the exports a user hands it besides a student's: a classical controller's (measured like any
policy, README of firmware_host/), a hand-over classical export and a teacher of another task (one line each)."""

from __future__ import annotations

import shutil

import pytest

from bpd.errors import BpdError
from firmware_host.measure.bench import BenchConfig, run_bench
from tests.conftest import ROOT, pendulum_export

HOPPER = ROOT / "benchmarks" / "teachers" / "Hopper-v5.npz"


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="needs arm-none-eabi-gcc")
def test_bench_measures_a_classical_export_on_the_emulated_core(tmp_path):
    pytest.importorskip("unicorn")
    from firmware_host.measure.cycle_model import TABLES
    from firmware_host.rig.classical import export_classical

    export_classical("rotary-pendulum", tmp_path / "classical")
    res = run_bench(BenchConfig(export=str(tmp_path / "classical"), out=str(tmp_path / "bench"),
                                targets=["cortex-m4f"], peers=False, plot=False, host_iters=100))
    assert list(res["networks"]) == ["classical"] and res["teacher"] is None
    net = res["networks"]["classical"]
    assert net["widths"] == [4, 1] and list(net["runtimes"]) == ["bpd-classical"]
    m4f = net["runtimes"]["bpd-classical"]["cortex-m4f"]
    # the cycles are the cycle model's sum over the median call's mix, the microseconds those at 168 MHz
    assert m4f["cycles_estimate"] == sum(TABLES["cortex-m4f"][k] * n for k, n in m4f["mix"].items())
    assert m4f["us_estimate"] == pytest.approx(m4f["cycles_estimate"] / 168)
    assert m4f["instructions_median"] > 0 and 0 < m4f["policy_bytes"] < m4f["flash_bytes"]
    assert m4f["max_abs_error_vs_host_c"] <= 2e-3  # the controller's own parity tolerance (volts)
    assert "arithmetic_floor" not in res and res["summary"] == {}
    md = (tmp_path / "bench" / "bench.md").read_text().splitlines()
    assert md[2].startswith("| classical 4-1 | bpd-classical | ")
    assert (tmp_path / "bench" / "bench.json").is_file()


def test_bench_refuses_a_handover_export_and_a_teacher_of_another_task_before_any_work(tmp_path):
    from firmware_host.rig.classical import HANDOVER_PREFIX, export_classical

    export_classical("rotary-pendulum", tmp_path / "cx", HANDOVER_PREFIX)
    with pytest.raises(BpdError, match=r"cx: the classical controller exported for hand-over mode \(its names "
                                        r"bpd_classical_\*\).*without --handover$"):
        run_bench(BenchConfig(export=str(tmp_path / "cx"), out=str(tmp_path / "b1"), peers=False, plot=False))
    with pytest.raises(BpdError, match="a classical controller has no teacher"):
        export_classical("rotary-pendulum", tmp_path / "c")
        run_bench(BenchConfig(export=str(tmp_path / "c"), teacher=str(HOPPER), out=str(tmp_path / "b2")))
    with pytest.raises(BpdError) as e:  # the InvertedPendulum student's bench handed the Hopper teacher
        run_bench(BenchConfig(export=str(pendulum_export()), teacher=str(HOPPER), out=str(tmp_path / "b3")))
    assert str(e.value).endswith("a teacher for Hopper-v5 (11 observations, 3 actions), the export "
                                 f"{pendulum_export()} is for InvertedPendulum-v5 (4, 1): give --teacher the "
                                 "teacher of the export's task")
    assert not any((tmp_path / b).exists() for b in ("b1", "b2", "b3"))  # nothing written


def test_a_target_named_twice_is_refused_before_any_work(tmp_path):
    """--targets cortex-m4f cortex-m4f measured everything and then ended with an internal error in the plot (a
    shape mismatch of two columns of one target): refused first, in one line."""
    with pytest.raises(BpdError, match=r"^--targets names cortex-m4f twice \(one column each\)$"):
        run_bench(BenchConfig(export=str(pendulum_export()), out=str(tmp_path / "b"), peers=False,
                              targets=["cortex-m4f", "cortex-m0plus", "cortex-m4f"]))
    with pytest.raises(BpdError, match=r"^unknown target 'm4f'; choose from cortex-m0plus, cortex-m4f, cortex-m7$"):
        run_bench(BenchConfig(export=str(pendulum_export()), out=str(tmp_path / "b"), targets=["m4f"]))
    assert not (tmp_path / "b").exists()


def test_a_handover_export_is_taken_beside_a_policy_alone(tmp_path):
    """A hand-over controller's names are prefixed (bpd_classical_*): built or evaluated as the policy it failed
    in the compiler or with an internal error; now one line, and a plain classical export is refused as --classical."""
    from bpd_app.cli import main
    from export.verify import verify_export
    from firmware_host.rig.classical import HANDOVER_PREFIX, export_classical

    export_classical("rotary-pendulum", tmp_path / "cx", HANDOVER_PREFIX)
    export_classical("rotary-pendulum", tmp_path / "c")
    assert verify_export(tmp_path / "cx", handover=True)["prefix"] == HANDOVER_PREFIX
    assert verify_export(tmp_path / "c")["prefix"] == "bpd"
    with pytest.raises(BpdError, match=r"c: not a hand-over controller \(--classical takes `bpd classical export "
                                       r"--handover`\)$"):
        verify_export(tmp_path / "c", handover=True)
    for argv in (["firmware", "build", str(tmp_path / "cx"), "--out", str(tmp_path / "fw")],
                 ["evaluate", str(tmp_path / "cx"), "--episodes", "1"]):
        assert main(argv) == 1, argv
    assert not (tmp_path / "fw").exists()


def test_classical_export_refuses_a_directory_of_something_else_and_a_rig_that_is_not_text(tmp_path, capsys):
    """`--out run` (a distill run directory) was written into; `--out FILE` said 'File exists'; `--rig d.npz`
    'cannot be read (UnicodeDecodeError)'. Each is one line now, and nothing is written."""
    from bpd_app.cli import main

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (tmp_path / "afile").write_text("x")
    (tmp_path / "d.npz").write_bytes(b"PK\x03\x04\xff\xfe\x00binary")
    for args, msg in ((["--rig", "rotary-pendulum", "--out", str(run)],
                       f"{run}: exists and is not an export directory (no export.json); choose another --out or "
                       "remove it"),
                      (["--rig", "rotary-pendulum", "--out", str(tmp_path / "afile")],
                       f"{tmp_path / 'afile'}: exists and is not a directory"),
                      (["--rig", str(tmp_path / "d.npz"), "--out", str(tmp_path / "c")],
                       f"{tmp_path / 'd.npz'}: not a YAML file (not text)")):
        assert main(["classical", "export", *args]) == 1
        assert capsys.readouterr().err.strip().splitlines() == [f"bpd: error: {msg}"]
    assert sorted(p.name for p in run.iterdir()) == ["config.json"] and not (tmp_path / "c").exists()


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="needs arm-none-eabi-gcc")
def test_an_export_moved_without_its_student_is_measured_without_the_rows_that_need_it(tmp_path, monkeypatch):
    """An export copied to another computer keeps what evaluate and firmware build use, but not the student file it
    names (the fixture's benchmarks/work/seed0/run/student.pt): bench stopped on it ('no student or teacher file
    there'). It now measures the kernel and says which rows it could not make: torch's, and the masked student the
    peers are handed."""
    import shutil

    pytest.importorskip("unicorn")
    monkeypatch.chdir(tmp_path)  # nor found from the working directory
    moved = tmp_path / "far" / "away" / "export"  # copied away: its student is not beside it wherever the repository's
    shutil.copytree(pendulum_export(), moved)     # benchmarks/work holds one (the training benchmark run here)
    res = run_bench(BenchConfig(export=str(moved), out=str(tmp_path / "bench"), targets=["cortex-m4f"],
                                peers=False, plot=False, host_iters=100, samples=1))
    assert set(res["networks"]) == {"student"} and res["teacher"] is None
    runtimes = res["networks"]["student"]["runtimes"]
    assert "torch" not in runtimes and "onnxruntime" in runtimes
    assert runtimes["bpd"]["cortex-m4f"]["instructions_median"] > 0
    assert res["source_note"].endswith("benchmarks/work/seed0/run/student.pt, is not there: no torch row, and no "
                                       "masked student for the peers (bench the export where its student is for them)")
    assert (tmp_path / "bench" / "bench.md").read_text().splitlines()[-3] == f"Note: {res['source_note']}."


def test_a_bench_run_again_and_stopped_while_plotting_leaves_the_previous_results(tmp_path, monkeypatch):
    """bench wrote bench.json and bench.md, then drew bench.png: run again into its --out and stopped while drawing,
    the directory held the new figures beside the previous plot. Now the plot goes first and the record last."""
    from types import SimpleNamespace

    import firmware_host.measure.bench as bench

    out = tmp_path / "bench"
    out.mkdir()
    before = {"bench.json": b'{"old": true}\n', "bench.md": b"old\n", "bench.png": b"old png"}
    for name, data in before.items():
        (out / name).write_bytes(data)

    def stopped(res, path):
        raise KeyboardInterrupt

    monkeypatch.setattr(bench, "markdown", lambda res: "new")
    monkeypatch.setattr(bench, "plot", stopped)
    with pytest.raises(KeyboardInterrupt):
        bench._write_results({"new": True}, SimpleNamespace(plot=True), out)
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before


def test_the_plots_legend_covers_no_bar(monkeypatch, tmp_path):
    """bench.png's legend sat inside the axes' upper right, over the last runtime's Cortex-M0+ bar (emlearn's, the
    tallest, on a 4-256-256-1 network): it stands beside the axes."""
    import bpd.io
    from firmware_host.measure.bench_report import plot

    figs = []
    monkeypatch.setattr(bpd.io, "save_png", lambda fig, path: figs.append(fig))
    targets = ["cortex-m0plus", "cortex-m4f", "cortex-m7"]
    counts = {"bpd": (9927168, 415065, 415064), "bpd-fast-tanh": (9925505, 414456, 414453),
              "emx-onnx-cgen": (10166767, 412327, 412327), "emlearn": (9907912, 478811, 478811)}
    res = {"targets": targets, "networks": {"student": {"runtimes": {
        impl: {t: {"instructions_median": n} for t, n in zip(targets, c)} for impl, c in counts.items()}}}}
    plot(res, tmp_path / "bench.png")
    (fig,) = figs
    fig.tight_layout()
    fig.canvas.draw()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent()
    bars = [p.get_window_extent() for p in ax.patches]
    assert len(bars) == 12 and not any(legend.overlaps(b) for b in bars)


def test_the_plots_runtime_names_do_not_run_into_each_other(monkeypatch, tmp_path):
    """A student bench with peers has nine runtimes: the last two names read 'student_maskedstudent_masked' run
    together under their bars. A network's name now breaks at its underscore: no two tick labels overlap."""
    import bpd.io
    from firmware_host.measure.bench_report import plot

    figs = []
    monkeypatch.setattr(bpd.io, "save_png", lambda fig, path: figs.append(fig))
    targets = ["cortex-m0plus", "cortex-m4f", "cortex-m7"]
    runs = {"student": ("bpd-integer", "emx-onnx-cgen", "emlearn"),
            "teacher": ("bpd", "bpd-fast-tanh", "emx-onnx-cgen", "emlearn"),
            "student_masked": ("emx-onnx-cgen", "emlearn")}
    res = {"targets": targets, "networks": {name: {"runtimes": {impl: {t: {"instructions_median": 1000 + i}
                                                                       for i, t in enumerate(targets)}
                                                                for impl in impls}} for name, impls in runs.items()}}
    plot(res, tmp_path / "bench.png")
    (fig,) = figs
    fig.tight_layout()
    fig.canvas.draw()
    ticks = [t.get_window_extent() for t in fig.axes[0].get_xticklabels()]
    assert len(ticks) == 9 and not any(a.overlaps(b) for a, b in zip(ticks, ticks[1:]))
