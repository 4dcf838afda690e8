"""The C kernel and ONNX graph against the golden network and hand-built cases.

Tolerance: 1e-5 absolute (float32) for every backend against the float64 golden outputs.
"""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest

from export.c_export import CPolicy, generate_c, layer_cost, plan_layer, quantise_rows
from export.cc import OPT as CC_OPT
from export.cc import STRICT
from export.collapse import CollapsedNet, collapse
from export.onnx_export import OnnxPolicy, build_onnx, reference_evaluator_run, save_onnx
from tests.test_export_collapse import GOLDEN, golden_policy

TOL = 1e-5
X = np.array(GOLDEN["inputs"], np.float32)
Y = np.array(GOLDEN["outputs"])


def c_policy(net, tmp_path, fmt="auto", int8=False, fast=False, name="c"):
    d = tmp_path / name
    generate_c(net, d, fmt, int8, "0" * 64, "test")
    return CPolicy(d, fast_tanh=fast)


@pytest.mark.parametrize("fmt", ["dense", "csr", "auto"])
def test_c_golden(tmp_path, fmt):
    pol = c_policy(collapse(golden_policy()), tmp_path, fmt)
    np.testing.assert_allclose(pol.act(X), Y, atol=TOL)


def test_c_fast_tanh_golden(tmp_path):
    pol = c_policy(collapse(golden_policy()), tmp_path, "csr", fast=True)
    np.testing.assert_allclose(pol.act(X), Y, atol=TOL)


def test_onnx_golden(tmp_path):
    net = collapse(golden_policy())
    model = build_onnx(net, {"env_id": "golden"})
    save_onnx(model, tmp_path / "p.onnx")
    np.testing.assert_allclose(OnnxPolicy(tmp_path / "p.onnx").act(X), Y, atol=TOL)
    np.testing.assert_allclose(reference_evaluator_run(model, X), Y, atol=TOL)
    assert {n.op_type for n in model.graph.node} <= {"Sub", "Gemm", "Tanh", "Relu", "Mul", "Add", "Clip", "Max", "Min"}
    onnx.checker.check_model(onnx.load(str(tmp_path / "p.onnx")), full_check=True)


def random_net(rng, widths, density, activation="tanh", output="tanh"):
    ws = [(rng.normal(size=(o, i)) * (rng.random((o, i)) < density)).astype(np.float32)
          for i, o in zip(widths[:-1], widths[1:])]
    for w in ws:  # keep every unit alive so shapes stay as given
        w[np.arange(w.shape[0]), np.arange(w.shape[0]) % w.shape[1]] = 0.7
    bs = [rng.normal(size=w.shape[0]).astype(np.float32) for w in ws]
    act_dim = widths[-1]
    return CollapsedNet(ws, bs, activation, output, -np.linspace(1, 2, act_dim).astype(np.float32),
                        np.linspace(1, 3, act_dim).astype(np.float32), widths_before=list(widths))


@pytest.mark.parametrize("activation,output", [("tanh", "tanh"), ("relu", "clip")])
def test_csr16_and_dense_paths_match_reference(tmp_path, activation, output):
    rng = np.random.default_rng(1)
    net = random_net(rng, [300, 20, 3], 0.05, activation, output)  # 300 inputs: CSR needs uint16 columns
    assert plan_layer(net.weights[0], "csr", False).storage == "csr16"
    assert plan_layer(net.weights[1], "csr", False).storage == "csr8"
    x = rng.normal(size=(200, 300)).astype(np.float32)
    for fmt in ("dense", "csr"):
        np.testing.assert_allclose(c_policy(net, tmp_path, fmt, name=fmt).act(x), net.act(x), atol=TOL)
    model = build_onnx(net, {})
    np.testing.assert_allclose(reference_evaluator_run(model, x), net.act(x), atol=TOL)


def test_storage_choice_by_cost():
    dense = np.ones((10, 10), np.float32)
    assert plan_layer(dense, "auto", False).storage == "dense"
    sparse = np.zeros((10, 10), np.float32)
    sparse[0, 0] = 1
    p = plan_layer(sparse, "auto", False)
    assert p.storage == "csr8" and p.value_bytes == 4 and p.index_bytes == 1 + 11 * 2
    assert layer_cost(dense, "dense", True).value_bytes == 100 and layer_cost(dense, "dense", True).scale_bytes == 40


def test_nan_and_inf_give_error_code_and_safe_action(tmp_path):
    pol = c_policy(collapse(golden_policy()), tmp_path)
    for bad in (np.nan, np.inf, -np.inf):
        rc, a = pol.run(np.array([0.0, bad, 1.0], np.float32))
        assert rc == -1
        np.testing.assert_array_equal(a, [0.0, 0.0])  # zero clamped into [-2, 2] and [0, 1]
    rc, a = pol.run(X[2])
    assert rc == 0


def test_int8_error_within_bound(tmp_path):
    # one layer: action = offset + scale * tanh(W x + b); per weight |dw| <= row_scale / 2, tanh 1-Lipschitz
    rng = np.random.default_rng(2)
    w = (rng.normal(size=(2, 6)) * (rng.random((2, 6)) < 0.6)).astype(np.float32)
    w[:, 0] = 1.0
    net = CollapsedNet([w], [np.zeros(2, np.float32)], "tanh", "tanh", np.array([-3, -1], np.float32),
                       np.array([3, 1], np.float32), widths_before=[6, 2])
    pol = c_policy(net, tmp_path, "csr", int8=True)
    _, scale = quantise_rows(w)
    x = rng.uniform(-2, 2, size=(500, 6)).astype(np.float32)
    bound = net.out_scale * (np.abs(x).sum(1, keepdims=True) * scale / 2) + 1e-6
    err = np.abs(pol.act(x) - net.act(x))
    assert (err <= bound).all()
    assert err.max() > 0  # int8 really is in use


def test_fast_tanh_max_error(tmp_path):
    """Measures the documented maximum error of the fast tanh over [-10, 10]."""
    src = tmp_path / "t.c"
    src.write_text('#include <stdio.h>\n#include "policy.h"\nint main(void){int i;for(i=-200000;i<=200000;++i){'
                   'float x=(float)i*5e-5f;printf("%.9g\\n",(double)bpd_tanh(x));}return 0;}\n')
    kdir = Path(__file__).resolve().parents[1] / "export"
    exe = tmp_path / "t"
    subprocess.run(["cc", *STRICT, *CC_OPT, "-DBPD_FAST_TANH", f"-I{kdir}", str(src), str(kdir / "policy.c"), "-lm",
                    "-o", str(exe)], check=True)
    y = np.array(subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split(), float)
    x = (np.arange(-200000, 200001) * np.float32(5e-5)).astype(np.float32).astype(np.float64)
    err = np.abs(y - np.tanh(x)).max()
    assert err <= 5e-7, err  # measured 3.9e-7 (policy.h)


@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_kernel_compiles_warning_free(tmp_path, cc):
    if shutil.which(cc) is None:
        pytest.skip(f"{cc} not installed")
    net = collapse(golden_policy())
    generate_c(net, tmp_path, "auto", True, "0" * 64, "test")
    for fast in ([], ["-DBPD_FAST_TANH"]):
        subprocess.run([cc, *STRICT, *CC_OPT, *fast, "-c", str(tmp_path / "policy.c"),
                        str(tmp_path / "policy_weights.c")], check=True, cwd=tmp_path)


def test_weights_file_banner(tmp_path):
    generate_c(collapse(golden_policy()), tmp_path, "auto", False, "ab" * 32, "bpd export run --out x")
    head = (tmp_path / "policy_weights.c").read_text().splitlines()[:4]
    assert head[0].startswith("/* generated - do not edit")
    assert "ab" * 32 in head[1] and "bpd export run --out x" in head[3]


def test_export_cli_end_to_end(tiny_pipeline, tmp_path):
    from tests.conftest import run_bpd

    out = tmp_path / "exp"
    p = run_bpd("export", str(tiny_pipeline / "run"), "--out", str(out), "--int8", "--episodes", "1",
                "--parity-samples", "10000")
    assert "parity" in p.stdout
    rep = json.loads((out / "export_report.json").read_text())
    assert rep["parity"]["pass"] and rep["parity"]["states"] == 10000
    for k in ("onnxruntime_vs_torch", "reference_evaluator_vs_torch"):
        assert rep["parity"][k] <= 1e-5
    # the float kernels within 1e-5 of ONNX; the integer kernel (shipped where it wins and keeps the return)
    # within its --int-budget of the action range, and bit for bit against its own model (checked in export)
    c_tol = 1e-5 if rep["kernel"]["kind"] != "integer" else rep["parity"]["c_tolerance"]
    assert rep["parity"]["c_vs_onnx"] <= c_tol
    assert rep["totals"]["flash_bytes"] > 0 and rep["dense_teacher"]["widths"] == [4, 32, 32, 1]
    # the boot self-test: one parity state and the shipped kernel's own action, exact for the integer kernel
    st = json.loads((out / "export.json").read_text())["selftest"]
    assert (out / st["file"]).is_file() and st["pairs"] == 1
    assert st["tolerance"] == (0.0 if rep["kernel"]["kind"] == "integer"
                               else pytest.approx(2 * rep["parity"]["c_tolerance"], rel=1e-6))
    meta = {p.key: p.value for p in onnx.load(str(out / "policy.onnx")).metadata_props}
    for k in ("env_id", "obs_dim", "act_dim", "action_low", "action_high", "sparsity", "params_nonzero",
              "source_sha256", "bpd_version"):
        assert k in meta
    ev = json.loads(run_bpd("evaluate", str(out), "--episodes", "1", "--json").stdout)
    assert ev["kind"] == "c" and ev["model_hash"] == rep["model_hash"]
    ev2 = json.loads(run_bpd("evaluate", str(out / "policy.onnx"), "--episodes", "1", "--json").stdout)
    assert ev2["return_mean"] == pytest.approx(ev["return_mean"], rel=0.01)


def test_csr_row_pointer_limit():
    """CSR row starts are uint16: a layer with more than 65,535 nonzeros is dense under auto and a
    forced CSR is refused, rather than wrapping the row pointer."""
    from bpd.errors import BpdError
    from export.c_export import ROW_PTR_MAX

    w = np.zeros((300, 300), np.float32)
    w.ravel()[: ROW_PTR_MAX] = 1.0  # exactly at the limit: CSR allowed
    assert plan_layer(w, "csr", False).storage == "csr16"
    w.ravel()[: ROW_PTR_MAX + 1] = 1.0
    assert plan_layer(w, "auto", False).storage == "dense"
    with pytest.raises(BpdError, match="cannot be stored as CSR"):
        plan_layer(w, "csr", False)


def test_offset_with_too_small_scratch_is_refused(tmp_path):
    """A descriptor with an input offset whose max_width cannot hold the centred observation gives
    BPD_ERR_ARG and the safe action instead of writing past scratch."""
    import re

    from tests.test_export_collapse import _near_constant_policy

    net = collapse(_near_constant_policy())
    generate_c(net, tmp_path, "auto", False, "0" * 64, "test")
    assert net.obs_dim == 3 and net.in_offset is not None
    src = tmp_path / "policy_weights.c"
    text = src.read_text()
    ok = CPolicy(tmp_path, build_dir=tmp_path / "b1")
    assert ok.run(np.array([0.9988, 0.0, 5.0], np.float32))[0] == 0
    # the same model claiming a scratch of 2 x 1 floats for its 3 inputs
    src.write_text(re.sub(r"(bpd_model = \{ 3, 1, )\d+,", r"\g<1>1,", text))
    bad = CPolicy(tmp_path, build_dir=tmp_path / "b2")
    rc, a = bad.run(np.array([0.9988, 0.0, 5.0], np.float32))
    assert rc == -2 and a[0] == 0.0  # BPD_ERR_ARG, zero clamped into [-1, 1]


def _wide_teacher(path, scale):
    """Pendulum-shaped 3 -> 256 -> 256 -> 1 relu teacher with weights `scale` times He's spread."""
    from training.teacher import Teacher

    rng = np.random.default_rng(7)
    widths = [3, 256, 256, 1]
    ws = [(rng.standard_normal((o, i)) * scale * np.sqrt(2 / i)).astype(np.float32)
          for i, o in zip(widths[:-1], widths[1:])]
    bs = [(0.1 * rng.standard_normal(o)).astype(np.float32) for o in widths[1:]]
    Teacher(ws, bs, "relu", "clip", np.zeros(3, np.float32), np.ones(3, np.float32),
            np.full(1, -2.0, np.float32), np.full(1, 2.0, np.float32), env_id="Pendulum-v1").save(path)


def _small_teacher(path=None):
    """A 3 -> 4 -> 1 tanh teacher for Pendulum-v1 whose observation mean is not zero (an input offset)."""
    from training.teacher import Teacher

    rng = np.random.default_rng(3)
    t = Teacher([rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((1, 4)).astype(np.float32)],
                [np.full(4, 0.1, np.float32), np.zeros(1, np.float32)], "tanh", "tanh",
                np.array([0.5, -0.25, 1.0], np.float32), np.ones(3, np.float32), np.full(1, -2.0, np.float32),
                np.full(1, 2.0, np.float32), env_id="Pendulum-v1")
    if path is not None:
        t.save(path)
    return t


# counted by hand: 3x4 + 4x1 weights and 4 + 1 biases (21 floats, 84 B), the output's five constants per action
# (out_scale, out_offset, low, high, safe: 20 B) and the input offset (3 floats, 12 B); scratch two buffers of
# max(4, 1, the 3 centred inputs) floats
SMALL_TEACHER = {"widths": [3, 4, 1], "flash_bytes": 84 + 20 + 12, "ram_activation_bytes": 2 * 4 * 4, "macs": 16,
                 "params": 21}


def test_dense_figures_count_what_the_kernel_stores():
    """The dense teacher's flash counts the bytes the student's does (output constants, input offset): one
    function, so the student's share of the teacher compares like with like."""
    from export.export import dense_figures

    d = dense_figures(collapse(_small_teacher()))
    assert {k: d[k] for k in SMALL_TEACHER} == SMALL_TEACHER


def test_the_export_and_bench_count_the_dense_teacher_alike(tmp_path):
    """`bpd bench` exports the teacher densely with the generic kernel and records its totals: exported so, the
    teacher is 100 % of itself in `bpd export`'s report (its dense teacher figure was short of the output constants
    and input offset its own export counts, 84 B against 116 B)."""
    from tests.conftest import run_bpd

    _small_teacher(tmp_path / "t.npz")
    p = run_bpd("export", str(tmp_path / "t.npz"), "--out", str(tmp_path / "e"), "--format", "dense", "--kernel",
                "generic", "--episodes", "0", "--parity-samples", "200")
    rep = json.loads((tmp_path / "e" / "export_report.json").read_text())
    assert {k: rep["dense_teacher"][k] for k in SMALL_TEACHER} == SMALL_TEACHER
    assert rep["totals"]["flash_bytes"] == SMALL_TEACHER["flash_bytes"] and rep["flash_vs_teacher"] == 1.0
    assert "weights 100.00 % of the teacher's" in p.stdout


def test_parity_reference_is_float64(tmp_path):
    """The torch reference in float64 is the exact function of the float32 weights (numpy float64 agrees
    to 1e-12), and float32 torch differs from it only by rounding."""
    import torch

    from export.export import load_source

    _wide_teacher(tmp_path / "t.npz", 1.0)
    src = load_source(tmp_path / "t.npz")
    obs = np.random.default_rng(0).uniform(-3, 3, (200, 3)).astype(np.float32)
    h = obs.astype(np.float64)
    for i, (w, b) in enumerate(zip(src.policy.weights, src.policy.biases)):
        h = h @ w.astype(np.float64).T + b
        h = np.maximum(h, 0) if i < 2 else np.clip(h, -2, 2)
    y64 = src.torch_forward(torch.as_tensor(obs, dtype=torch.float64)).numpy()
    y32 = src.torch_forward(torch.as_tensor(obs)).numpy()
    assert y64.dtype == np.float64 and y32.dtype == np.float32
    assert np.abs(y64 - h).max() < 1e-12
    assert 0 < np.abs(y32 - h).max() < 1e-4


@pytest.mark.parametrize("scale,raised", [(0.3, False), (6.0, True)])
def test_parity_tolerance_follows_float32_floor(tmp_path, scale, raised):
    """A small-weight network is held to 1e-5 x the half action range; one whose own float32 forward
    already moves by more than that is held to 4x that floor, and its export passes."""
    from tests.conftest import run_bpd

    _wide_teacher(tmp_path / "t.npz", scale)
    run_bpd("export", str(tmp_path / "t.npz"), "--out", str(tmp_path / "e"), "--episodes", "0",
            "--parity-samples", "2000")
    par = json.loads((tmp_path / "e" / "export_report.json").read_text())["parity"]
    floor = par["torch_float32_vs_float64"]
    assert par["pass"] and par["reference"] == "torch float64" and floor > 0
    assert par["tolerance"] == pytest.approx(max(2e-5, 4 * floor))
    assert (par["tolerance"] > 2e-5) == raised
    for k in ("onnxruntime_vs_torch", "reference_evaluator_vs_torch", "c_vs_torch"):
        assert par[k] <= par["tolerance"]


def test_a_run_given_its_teacher_and_dataset_from_the_working_directory_is_read_from_anywhere(tiny_pipeline,
                                                                                              tmp_path, monkeypatch):
    """`bpd distill --teacher t.npz --dataset d.npz --out runs/s` in one directory: its config.json records them
    relative to the run directory, so that export (and select) find them from any other working directory; an
    absolute path stays as given."""
    from export.export import load_source
    from tests.conftest import run_bpd

    work = tmp_path / "work"
    work.mkdir()
    for f in ("teacher.npz", "dataset.npz"):
        shutil.copy(tiny_pipeline / f, work / f)
    run_bpd("distill", "--teacher", "teacher.npz", "--dataset", str(work / "dataset.npz"), "--out", "runs/s",
            "--steps", "100", "--eval-every", "100", "--eval-episodes", "1", "--hidden", "8", "8", "--critic-hidden",
            "16", "16", "--no-progress", "--kl-warmup", "none", cwd=str(work))
    cfg = json.loads((work / "runs" / "s" / "config.json").read_text())
    assert cfg["teacher"] == "../../teacher.npz" and cfg["dataset"] == str(work / "dataset.npz")
    monkeypatch.chdir(tmp_path)  # elsewhere
    src = load_source(work / "runs" / "s")
    assert Path(src.teacher).resolve() == (work / "teacher.npz").resolve()
    assert Path(src.dataset).resolve() == (work / "dataset.npz").resolve()


def test_a_student_file_in_a_run_directory_brings_the_runs_dataset_and_teacher(tiny_pipeline, tmp_path):
    """`bpd student select` writes selected.pt beside student.pt: exporting that file reads the run's config.json
    as exporting the directory does (the dataset calibrates the integer kernel and draws the parity states, the
    teacher gives the dense figures); a student file alone keeps neither."""
    from export.export import load_source

    run = tmp_path / "run"
    shutil.copytree(tiny_pipeline / "run", run)
    shutil.copy(run / "student.pt", run / "selected.pt")
    whole = load_source(run)
    assert whole.dataset and whole.teacher and Path(whole.dataset).is_file() and Path(whole.teacher).is_file()
    for f in ("student.pt", "selected.pt"):
        one = load_source(run / f)
        assert (one.dataset, one.teacher) == (whole.dataset, whole.teacher)
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(run / "student.pt", alone / "x.pt")
    lone = load_source(alone / "x.pt")
    assert (lone.dataset, lone.teacher) == (None, None)
    # copied into a run of other data (its config's dataset hash another): that run's data is not taken
    other = tmp_path / "other"
    other.mkdir()
    cfg = json.loads((run / "config.json").read_text())
    (other / "config.json").write_text(json.dumps(cfg | {"dataset_sha256": "0" * 64}))
    shutil.copy(run / "student.pt", other / "x.pt")
    assert (load_source(other / "x.pt").dataset, load_source(other / "x.pt").teacher) == (None, None)
    (other / "config.json").write_text(json.dumps(cfg))  # the same data: taken
    assert load_source(other / "x.pt").dataset == whole.dataset


@pytest.mark.parametrize(("extra", "by", "named"), [([], "int_budget", "--int-budget 0.02 of the action range"),
                                                     (["--tanh-budget", "0.5"], "tanh_budget", "--tanh-budget 0.5")])
def test_the_integer_kernels_parity_record_names_what_set_its_tolerance(tiny_pipeline, tmp_path, extra, by, named):
    """The integer kernel's C is held to the larger of --int-budget's share of the action range and --tanh-budget:
    the parity record says which (c_tolerance_by), and its check names that flag."""
    from tests.conftest import run_bpd

    out = tmp_path / "e"
    run_bpd("export", str(tiny_pipeline / "run"), "--out", str(out), "--kernel", "integer", "--episodes", "0",
            "--parity-samples", "500", *extra)
    par = json.loads((out / "export_report.json").read_text())["parity"]
    assert par["c_tolerance_by"] == by and par["c_check"].endswith(f"within {named}")
    assert par["c_tolerance"] == pytest.approx(0.5 if by == "tanh_budget" else 0.02 * 2 * 3.0)


def test_a_failed_parity_check_names_each_comparison_over_its_tolerance_and_what_to_try():
    from export.parity import failure

    base = {"torch_float32_vs_float64": 1e-7, "onnxruntime_vs_torch": 2e-6, "reference_evaluator_vs_torch": 2e-6}
    c_over = {**base, "c_vs_onnx": 0.05, "c_vs_torch": 0.05}
    msg = failure(c_over, 3e-5, 1e-3, "compact", "--tanh-budget 0.001")
    assert msg.startswith("parity check failed: c_vs_onnx 5.00e-02 over 1.00e-03, c_vs_torch 5.00e-02 over 1.00e-03; "
                          "the compact kernel is over --tanh-budget 0.001: try --kernel generic")
    assert msg.endswith("(a previous export in --out is kept)") and "\n" not in msg
    assert "allow more, or ship a float kernel (--kernel compact)" in failure(
        c_over, 3e-5, 0.012, "integer", "--int-budget 0.002 of the action range")
    assert "the ONNX graph differs from torch, a bug of bpd" in failure({**base, "onnxruntime_vs_torch": 1e-3,
                                                                      "c_vs_onnx": 0.0, "c_vs_torch": 0.0},
                                                                     3e-5, 3e-5, "generic", "--tanh-budget 1e-05")
    # a ReLU network (no tanh): the tolerance is the parity rule's, and the hint says so, not --tanh-budget
    assert "the generated kernel's float rounding is over the parity tolerance on this network: try --kernel " \
        "generic" in failure(c_over, 3e-5, 3e-5, "generated", "the parity tolerance")
    nan = failure({**base, "c_vs_onnx": float("nan"), "c_vs_torch": float("nan")}, 3e-5, 3e-5, "generic", "")
    assert "c_vs_torch NaN over 3.00e-05" in nan and "NaN or Inf in the parity states" in nan


def test_parity_states_are_drawn_from_a_dataset_of_the_policys_own_task(tiny_pipeline, tmp_path):
    """A dataset of another environment with as many observations (the desktop cart-pole's four beside
    InvertedPendulum's) was taken as it was for the parity states and the integer kernel's calibration. It is refused
    now, except where it is the one the policy came from: its run's dataset (distilled with --env, by path or by
    content) or one its teacher collected (the teacher exported, or a student's run's: compared with the student's
    own hash, no student's teacher's dataset was taken)."""
    from types import SimpleNamespace

    from bpd.errors import BpdError
    from bpd.io import load_arrays, save_arrays
    from export.export import parity_states

    meta, arrays = load_arrays(tiny_pipeline / "dataset.npz", "bpd-dataset")
    other = tmp_path / "cartpole.npz"
    save_arrays(other, meta | {"env_id": "firmware_host.rig:bpd/desktop-cartpole-v0"}, arrays)
    shutil.copyfile(other, tmp_path / "copy.npz")
    pol = SimpleNamespace(obs_dim=int(meta["obs_dim"]))

    def src(kind="student", dataset=None, sha="0" * 64, teacher=None):
        return SimpleNamespace(policy=pol, env_id="InvertedPendulum-v5", kind=kind, dataset=dataset, sha256=sha,
                               teacher=teacher)

    with pytest.raises(BpdError, match=r"cartpole\.npz: a dataset of firmware_host\.rig:bpd/desktop-cartpole-v0, "
                                       r"but the student is of InvertedPendulum-v5; give --dataset one of"):
        parity_states(src(), str(other), 100, 0)
    for s, d in ((src(dataset=str(other)), other), (src(dataset=str(other)), tmp_path / "copy.npz"),
                 (src("teacher", sha=meta["teacher_sha256"]), other),
                 # a student's own teacher collected it (the teacher its run distilled from): as the docstring says
                 (src(teacher=str(tiny_pipeline / "teacher.npz")), other)):
        obs, origin = parity_states(s, str(d), 100, 0)
        assert obs.shape == (100, pol.obs_dim) and origin.startswith("50 dataset states")


def test_a_rigs_nominal_and_randomised_environments_are_one_task(tiny_pipeline, tmp_path):
    """A shipped rig's -dr id is its nominal plant randomised (the committed rotary teacher trained on
    bpd/rotary-pendulum-dr-v0): a dataset of the nominal plant another teacher collected was refused by export ('a
    dataset of ...rotary-pendulum-v0, but the teacher is of ...rotary-pendulum-dr-v0') and by distill as another
    environment's, as rig:PATH and rig-dr:PATH are not. Another rig's dataset is still refused."""
    from types import SimpleNamespace

    from bpd.errors import BpdError
    from bpd.io import load_arrays, save_arrays
    from export.export import parity_states
    from training.collect import check_task, load_dataset

    meta, arrays = load_arrays(tiny_pipeline / "dataset.npz", "bpd-dataset")
    arrays |= {"action_low": np.full(1, -10.0, np.float32), "action_high": np.full(1, 10.0, np.float32)}
    save_arrays(nominal := tmp_path / "nominal.npz", meta | {"env_id": "firmware_host.rig:bpd/rotary-pendulum-v0"},
                arrays)
    save_arrays(other := tmp_path / "other.npz", meta | {"env_id": "firmware_host.rig:bpd/desktop-cartpole-swingup-v0"},
                arrays)
    dr = "firmware_host.rig:bpd/rotary-pendulum-dr-v0"
    src = SimpleNamespace(policy=SimpleNamespace(obs_dim=int(meta["obs_dim"])), env_id=dr, kind="teacher",
                          dataset=None, sha256="0" * 64, teacher=None)
    assert parity_states(src, str(nominal), 100, 0)[1].startswith("50 dataset states")
    teacher = SimpleNamespace(env_id=dr, action_low=arrays["action_low"], action_high=arrays["action_high"])
    check_task(load_dataset(nominal), teacher, "nominal.npz")
    with pytest.raises(BpdError, match="a dataset of firmware_host.rig:bpd/desktop-cartpole-swingup-v0, but the "
                                       "teacher is of firmware_host.rig:bpd/rotary-pendulum-dr-v0"):
        parity_states(src, str(other), 100, 0)


def test_an_export_and_its_int_kernel_name_the_student_they_came_from(tiny_pipeline, tmp_path):
    """OUT/int's export.json took OUT's record whole, its source relative to OUT: read from OUT/int it named a file
    that is not there, and `bpd bench OUT/int` stopped on it ('OUT/int/../run/student.pt: no student or teacher file
    there'), then on OUT/int's missing report. Now the record names the student from its own directory, and bench
    points at the export that measures it. `bpd export` given an export (its directory or its ONNX model) said 'no
    student or teacher file there' or 'not a readable student file (UnpicklingError)'; it now names the student."""
    from bpd.errors import BpdError
    from bpd.io import path_from_record
    from export.export import ExportConfig, load_source, run_export
    from firmware_host.measure.bench import BenchConfig, run_bench

    out, student = tmp_path / "exp", (tiny_pipeline / "run" / "student.pt").resolve()
    run_export(ExportConfig(source=str(tiny_pipeline / "run"), out=str(out), kernel="generic", integer=True,
                            episodes=0, parity_samples=300))
    for d in (out, out / "int"):
        assert path_from_record(json.loads((d / "export.json").read_text())["source"], d).resolve() == student
    with pytest.raises(BpdError, match=rf"^{out / 'int'}: the integer kernel of the export {out} \(bpd export --int\), "
                                       rf"measured beside its shipped kernel by bpd bench {out}$"):
        run_bench(BenchConfig(export=str(out / "int"), out=str(tmp_path / "bench"), peers=False,
                              targets=["cortex-m4f"]))
    for given, what in ((out, "an export directory"), (out / "policy.onnx", "an ONNX model")):
        with pytest.raises(BpdError, match=f"^{given}: {what}, not what bpd export reads: give the student it came "
                                           "from, ") as e:
            load_source(given)
        assert Path(str(e.value).rpartition(", ")[2]).resolve() == student
    lone = tmp_path / "lone.onnx"
    shutil.copyfile(out / "policy.onnx", lone)
    with pytest.raises(BpdError, match="an ONNX model, not what bpd export reads: give the student it came from "
                                       r"\(a run directory or student.pt\) or a teacher .npz$"):
        load_source(lone)
