"""`bpd bench`: what a policy costs to run, on the host and on emulated Cortex-M cores, next to
the dense exporters a user would otherwise reach for (emlearn, emx-onnx-cgen).

Networks: the student export (generic or generated kernel), its int8 and integer-only forms (if
exported) and the dense teacher (exported densely by bpd's own kernel). Runtimes: torch on CPU,
onnxruntime, the C kernel on the host (median ns and callgrind instructions), and each Cortex-M
target under unicorn (instructions, estimated cycles, flash, RAM, and the stack of the whole image
from its call graph). Peers generate dense C from the same networks and are built with the same
flags. emlearn takes a plain chain of affine layers, so it gets the network with the input offset
folded into the first bias: on an observation that barely varies its float32 error against the host
C kernel can then exceed the 1e-5 tolerance (recorded, not enforced, for peers).
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bpd.cache import Key
from bpd.config import field
from bpd.errors import BpdError
from bpd.io import path_from_record, write_json, write_text
from firmware_host.measure.bench_report import INT_ROW, markdown, plot
from firmware_host.measure.build import BENCH, TARGETS, compile_flags, compile_image, image_report
from firmware_host.measure.cycle_model import estimate_cycles, estimate_us

if TYPE_CHECKING:
    from training.teacher import Teacher

EMU_TARGETS = ("cortex-m0plus", "cortex-m4f", "cortex-m7")
MEASURE = Path(__file__).resolve().parent
TOL = 1e-5


@dataclass
class BenchConfig:
    export: str = field(help="student export directory (from `bpd export`)", positional=True)
    teacher: str | None = field(None, help="teacher .npz for the dense comparison (default: the student's teacher)")
    out: str = field("bench", help="results directory (JSON, markdown table, plot)")
    targets: list[str] = field(list(EMU_TARGETS), help="emulated Cortex-M targets")
    peers: bool = field(True, help="also build and measure emlearn and emx-onnx-cgen")
    samples: int = field(5, help="observations per emulated measurement")
    host_iters: int = field(20000, help="inferences per timed host loop")
    seed: int = field(0, help="seed of the measured observations")
    plot: bool = field(True, help="draw bench.png beside the JSON and markdown (the experiment runner's cells "
                       "read the JSON only)")


# ------------------------------------------------------------------ host measurements


def _median_ns(fn, obs: np.ndarray, calls: int = 200, batches: int = 15) -> float:
    fn(obs[0])
    times = []
    for _b in range(batches):
        t0 = time.perf_counter_ns()
        for i in range(calls):
            fn(obs[i % len(obs)])
        times.append((time.perf_counter_ns() - t0) / calls)
    return float(statistics.median(times))


def host_c(sources: list[Path], include: list[Path], work: Path, iters: int, strict: set[Path],
           fast_tanh: bool = False) -> dict:
    """Median ns per inference and callgrind instructions per inference of a host build."""
    img = compile_image("host", [*sources, BENCH / "bench_host.c"], include, work, "bench_host", strict=strict,
                        fast_tanh=fast_tanh)
    out = subprocess.run([str(img.elf), str(iters), "9"], capture_output=True, text=True, check=True).stdout.split()
    res = {"median_ns": float(out[0])}  # a timing of this machine: measured every time
    valgrind = shutil.which("valgrind")
    if valgrind:
        from bpd.cache import Key, entry, host_identity, load, store, tool_version, toolchain
        from export.cc import find_cc

        # the count depends on the program and the machine alone: kept in the cache (bpd/cache.py)
        cc = find_cc()
        path = entry("callgrind", Key("callgrind").text(toolchain(cc), tool_version(valgrind), host_identity())
                     .text(*(s in strict for s in sources)).files(MEASURING_CODE)
                     .preprocessed(cc, ["-std=c99", *compile_flags("host", include, fast_tanh=fast_tanh)],
                                   [*sources, BENCH / "bench_host.c"]))
        if (kept := load(path, {"callgrind_instructions": NUM})) is not None:
            return res | kept
        counts = []
        for n in (200, 400):
            p = subprocess.run([valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", str(img.elf),
                                str(n), "1"], capture_output=True, text=True)
            m = re.search(r"Collected\s*:\s*(\d+)", p.stderr)
            counts.append(int(m.group(1)) if m else None)
        c200, c400 = counts
        if c200 is not None and c400 is not None:
            res["callgrind_instructions"] = (c400 - c200) / 200
            store(path, {"callgrind_instructions": res["callgrind_instructions"]})
    return res


# ------------------------------------------------------------------ peers


def onnx_net(path: Path) -> dict:
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    init = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    n = sum(1 for k in init if re.fullmatch(r"W\d+", k))
    acts = {node.op_type for node in m.graph.node if node.name.startswith("act")}
    biases = [init[f"B{i}"] for i in range(n)]
    if "in_offset" in init:  # peers take a plain chain of affine layers: fold the offset into the bias
        folded = biases[0].astype(np.float64) - init["W0"].astype(np.float64) @ init["in_offset"]
        biases[0] = folded.astype(np.float32)
    return {"weights": [init[f"W{i}"] for i in range(n)], "biases": biases,
            "activation": "relu" if "Relu" in acts else "tanh", "out_scale": init.get("out_scale"),
            "out_offset": init.get("out_offset")}


def _dims_header(net: dict, d: Path) -> None:
    obs_dim, act_dim = net["weights"][0].shape[1], net["weights"][-1].shape[0]
    from export.c_export import c_float

    fl = lambda a: "{" + ", ".join(c_float(float(x)) for x in a) + "}"
    write_text(d / "peer_dims.h", f"#ifndef PEER_DIMS_H\n#define PEER_DIMS_H\n#define PEER_OBS_DIM {obs_dim}\n"
               f"#define PEER_ACT_DIM {act_dim}\n#define PEER_OUT_SCALE {fl(net['out_scale'])}\n"
               f"#define PEER_OUT_OFFSET {fl(net['out_offset'])}\n#endif\n")


def make_emx(onnx_path: Path, d: Path) -> tuple[list[Path], list[Path]]:
    exe = shutil.which("emx-onnx-cgen") or str(Path(__import__("sys").executable).with_name("emx-onnx-cgen"))
    d.mkdir(parents=True, exist_ok=True)
    p = subprocess.run([exe, "compile", str(onnx_path), str(d / "emx_model.c"), "--model-name", "model",
                        "--color", "never", "--large-weight-threshold", str(1 << 30)], capture_output=True, text=True)
    if p.returncode != 0:
        raise BpdError(f"emx-onnx-cgen failed: {p.stderr.strip().splitlines()[-1:]}")
    _dims_header(onnx_net(onnx_path), d)
    return [d / "emx_model.c", BENCH / "bench_emx.c"], [d, BENCH]


def make_emlearn(onnx_path: Path, d: Path) -> tuple[list[Path], list[Path]]:
    import emlearn
    from emlearn.net import Wrapper

    net = onnx_net(onnx_path)
    acts = [net["activation"]] * (len(net["weights"]) - 1) + ["tanh"]
    d.mkdir(parents=True, exist_ok=True)
    # the Wrapper also compiles a host module into ./tmp: build it inside the bench's work directory
    with contextlib.chdir(d):
        w = Wrapper(acts, [x.T.astype(np.float32) for x in net["weights"]],
                    [b.astype(np.float32) for b in net["biases"]], classifier="loadable", return_type="regressor")
    code = w.save(name="peer_net")
    write_text(d / "peer_net.h", "#ifndef PEER_NET_H\n#define PEER_NET_H\n#include <eml_net.h>\n" + code + "\n#endif\n")
    _dims_header(net, d)
    return [BENCH / "bench_emlearn.c"], [d, BENCH, Path(emlearn.includedir)]


# ------------------------------------------------------------------ emulation


# the project's code an emulated figure or a count depends on besides the sources built: a change here is a new key
MEASURING_CODE = [*(MEASURE / f"{m}.py" for m in ("bench", "build", "emulate", "cycle_model", "elf", "stack")),
                  MEASURE.parents[1] / "export" / "cc.py", MEASURE.parents[1] / "bpd" / "cache.py"]


def emulate_key(target: str, sources: list[Path], include: list[Path], obs: np.ndarray, act_dim: int,
                strict: set[Path], policy_objects: list[str], fast_tanh: bool) -> Key:
    """The cache key of an emulated measurement (bpd/cache.py): everything the build, the run and the counts read
    (unusable when a source cannot be preprocessed: then it is built, and not kept)."""
    import capstone
    import elftools
    import unicorn

    from bpd.cache import toolchain
    from export.cc import find_cc
    from firmware_host.measure.build import BOARDS, arm_toolchain

    srcs = [Path(s) for s in [*sources, BENCH / "bench_main.c"]]
    cc = find_cc() if target == "host" else arm_toolchain()
    return (Key("emulate").text(target, fast_tanh, act_dim, sorted(policy_objects),
                                toolchain(cc, tuple(TARGETS[target]["flags"])), unicorn.__version__,
                                capstone.__version__, elftools.__version__)
            .text(*(s in strict for s in srcs))
            .preprocessed(cc, ["-std=c99", *compile_flags(target, include, fast_tanh=fast_tanh)], srcs)
            .files(sorted(BOARDS.iterdir())).files(MEASURING_CODE)
            .text(obs.shape, obs.dtype).data(np.ascontiguousarray(obs, np.float32).tobytes()))


def emulate_build(target: str, sources: list[Path], include: list[Path], work: Path, obs: np.ndarray,
                  act_dim: int, strict: set[Path], policy_objects: list[str], fast_tanh: bool = False) -> dict:
    """Build the sources with the bench's entry point for target, run them on obs under the emulator: figures
    of the median call, the outputs and the image's sizes. Kept in the cache (bpd/cache.py) by its inputs: a
    measurement made before is read back, and its build directory `work` is then not made."""
    from bpd.cache import cache_dir, entry, load, store

    path = entry("emulate", emulate_key(target, sources, include, obs, act_dim, strict, policy_objects, fast_tanh)) \
        if cache_dir("emulate") is not None else None  # no key computed (no preprocessing) when the cache is off
    if (e := load(path, EMULATED)) is not None:
        with contextlib.suppress(ValueError, TypeError):  # outputs of other sizes: measured again, replaced
            return e | {"outputs": np.asarray(e["outputs"], np.float32).reshape(len(obs), act_dim)}
    e = _emulate_build(target, sources, include, work, obs, act_dim, strict, policy_objects, fast_tanh)
    store(path, e | {"outputs": e["outputs"].astype(np.float64).tolist()})
    return e


# the figures of an emulated measurement (a cache entry without one of them is measured again)
NUM, INT_OR_NONE = (int, float), (int, type(None))
EMULATED: dict[str, type | tuple[type, ...]] = {"cycles_estimate": NUM, "us_estimate": NUM, "mix": dict, "parts": dict,
    "outputs": list, "stack_bytes": INT_OR_NONE, "policy_stack_bytes": INT_OR_NONE, **dict.fromkeys(("clock_mhz",
    "instructions_median", "instructions_min", "instructions_max", "flash_bytes", "ram_bytes", "policy_bytes"), int)}


def _emulate_build(target: str, sources: list[Path], include: list[Path], work: Path, obs: np.ndarray,
                   act_dim: int, strict: set[Path], policy_objects: list[str], fast_tanh: bool = False) -> dict:
    from firmware_host.measure.emulate import Emulator

    img = compile_image(target, [*sources, BENCH / "bench_main.c"], include, work, "bench", strict=strict,
                        fast_tanh=fast_tanh)
    emu = Emulator(img.elf, target)
    runs = [emu.call(o, act_dim) for o in obs]
    counts = [r.instructions for r in runs]
    mid = runs[int(np.argsort(counts)[len(counts) // 2])]
    cycles = estimate_cycles(target, mid.mix)
    rep = image_report(img, policy_objects)
    return {"instructions_median": int(np.median(counts)), "instructions_min": min(counts),
            "instructions_max": max(counts), "cycles_estimate": cycles, "us_estimate": estimate_us(target, cycles),
            "clock_mhz": TARGETS[target]["clock_mhz"], "mix": dict(mid.mix),
            "outputs": np.stack([r.outputs for r in runs]), "flash_bytes": rep["flash_bytes"],
            "ram_bytes": rep["ram_bytes"], "policy_bytes": rep["policy_bytes"],
            "stack_bytes": rep.get("stack_bytes"), "policy_stack_bytes": rep.get("stack", {}).get(
                "bpd_policy_run", {}).get("bytes"), "parts": rep["parts"]}


def kernel_cost(export_dir: Path, target: str = "cortex-m4f", samples: int = 3, seed: int = 0) -> dict | None:
    """What an export's kernel costs on an emulated core (`bpd export --kernel auto`'s meter): median
    instructions and estimated cycles of bpd_policy_run over a few observations, and the flash of the
    policy's own code and data in the linked image. None when the cross compiler or the emulator is
    missing (the export then falls back to its stated default)."""
    if shutil.which("arm-none-eabi-gcc") is None:
        return None
    try:
        import capstone  # noqa: F401
        import unicorn  # noqa: F401
    except ImportError:
        return None
    from export.c_export import CPolicy

    pol = CPolicy(export_dir, build_dir=export_dir / "build" / "host")
    obs = np.random.default_rng(seed).normal(0, 0.3, size=(samples, pol.obs_dim)).astype(np.float32)
    srcs = [export_dir / "policy.c", export_dir / "policy_weights.c", BENCH / "bench_bpd.c"]
    e = emulate_build(target, srcs, [export_dir, BENCH], export_dir / "build" / f"cost-{target}", obs, pol.act_dim,
                      set(srcs), ["policy", "policy_weights"])
    return {"target": target, "instructions": e["instructions_median"], "cycles": e["cycles_estimate"],
            "us": e["us_estimate"], "flash_bytes": e["policy_bytes"], "stack_bytes": e["policy_stack_bytes"],
            "max_abs_error_vs_host_c": float(np.abs(e["outputs"] - pol.act(obs)).max()), "samples": samples}


def policy_cost(cost: str):
    """`bpd student select --cost`'s meter: the function giving a candidate policy's estimated Cortex-M4F
    cycles or policy flash, the same rule for every candidate: the cheaper of the compact kernel with the
    table tanh (the float kernel auto picks on most students) and the integer kernel, which auto ships
    where, besides, it stays within --int-budget and keeps the float kernel's return (not checked here:
    the selection judges returns with the float student; benchmarks/results/cost/cost.md has the integer
    kernel's returns). The integer kernel is the one with tanh by lookup whatever its flash (auto holds
    the integer forms to --int-flash-ratio times the generic kernel's flash, and ships the interpolating
    form where the lookup's 4 kB table passes that), calibrated here on states drawn from the policy's own
    normalisation (mean +- std), not the dataset the export calibrates on: the calibration sets the
    observations' Q formats, and where a used one needs more than 16 fraction bits they come in by integer
    code rather than VCVT (export/fp_inputs.py: thirteen instructions an observation, not about four). So the
    figure ranks the candidates by one rule; it is not the cost of the kernel the export ships, and its record names
    the kernel it is of (compact-table or integer) and the core."""
    import tempfile

    from export.codegen import table_form
    from export.collapse import collapse
    from export.compact import generate_compact
    from export.fixed_point import generate_int_kernel, quantise

    key = {"m4f-cycles": "cycles", "flash": "flash_bytes"}[cost]

    def measure(policy) -> dict:  # the figure, the kernel it is of (as `bpd export` names it) and the core
        net = collapse(policy)
        calib = (policy.obs_mean + policy.obs_std * np.random.default_rng(0).normal(
            0, 1, (1024, net.obs_dim))).astype(np.float32)
        figures = []
        with tempfile.TemporaryDirectory(prefix="bpd-cost-") as d:
            generate_compact(net, Path(d) / "compact", "0" * 64, "bpd student select --cost", table_form())
            generate_int_kernel(net, quantise(net, calib, "policy normalisation"), Path(d) / "int", "0" * 64,
                                "bpd student select --cost")
            for k, kernel in (("compact", "compact-table"), ("int", "integer")):
                c = kernel_cost(Path(d) / k)
                if c is None:
                    raise BpdError(f"--cost {cost} needs arm-none-eabi-gcc and the 'emulate' extra (unicorn, "
                                   "capstone)")
                figures.append(c | {"kernel": kernel})
        c = min(figures, key=lambda c: c["cycles"])
        return {"cost": float(c[key]), "kernel": c["kernel"], "target": c["target"]}

    return measure


# ------------------------------------------------------------------ the benchmark


def arithmetic_floor(report: dict) -> dict:
    """One instruction per nonzero multiply-add, bias add and surviving activation, plus the output map
    and, where the export keeps an input offset, one subtraction per observation."""
    layers = report["layers"]
    macs = sum(L["nnz"] for L in layers)
    biases = sum(L["shape_after"][0] for L in layers)
    hidden_acts = sum(L["shape_after"][0] for L in layers[:-1])
    act_dim = layers[-1]["shape_after"][0]
    centre = layers[0]["shape_after"][1] if report.get("input_offset") else 0
    return {"macs": macs, "bias_adds": biases, "activations": hidden_acts + act_dim, "output_ops": 2 * act_dim,
            "input_offset_subs": centre, "instructions": macs + biases + hidden_acts + act_dim + 2 * act_dim + centre}


def _masked_export(info: dict, exp: Path, out: Path) -> Path:
    """The student with pruned weights zeroed and the normalisation collapsed (scale folded, mean as the
    input offset), but every unit kept."""
    from export.c_export import generate_c
    from export.collapse import collapse
    from export.export import load_source
    from export.onnx_export import build_onnx, save_onnx

    src = load_source(path_from_record(info["source"], exp))
    net = collapse(src.policy, remove_dead=False)
    out.mkdir(parents=True, exist_ok=True)
    save_onnx(build_onnx(net, {"env_id": src.env_id}), out / "policy.onnx")
    generate_c(net, out, "dense", False, src.sha256, "bench: masked student")
    write_json(out / "export_report.json", {"widths_after": net.widths})
    return out


def _run_inputs(export_dir: Path, given: str | None) -> tuple[Path | None, str | None]:
    """The teacher (given, or the one the student was distilled from) and the run's dataset: the run export's
    `student_run` finds (the student's directory, or the run `bpd student select` wrote it from)."""
    from export.export import recorded_input, student_run
    from training.student import load_student

    info = json.loads((export_dir / "export.json").read_text())
    source = path_from_record(info["source"], export_dir)
    run, d = student_run(source, load_student(source)[1]) if source.suffix == ".pt" and source.is_file() else ({}, None)
    teacher = Path(given) if given else (path_from_record(run["teacher"], d) if run.get("teacher") and d else None)
    if teacher is not None and not teacher.is_file():
        teacher = None if not given else teacher
    dataset = recorded_input(run["dataset"], d) if run.get("dataset") and d else None  # a Minari name as it is
    return teacher, dataset


def run_bench(cfg: BenchConfig) -> dict:
    from bpd.config import check_ranges
    from bpd.io import check_output_dir
    from export.c_export import CPolicy
    from export.export import ExportConfig, load_source, run_export
    from export.onnx_export import OnnxPolicy
    from export.verify import verify_export

    check_ranges(cfg, {"samples": (1, 100_000), "host_iters": (1, 100_000_000), "seed": (0, 2**31 - 1)})
    exp = Path(cfg.export)
    info = verify_export(exp)  # parity passed and the files are the ones it checked (a hand-over export refused)
    classical = info.get("format") == "bpd-classical"
    if not classical and not (exp / "export_report.json").is_file():  # OUT/int: an export's own, with no report
        raise BpdError(f"{exp}: the integer kernel of the export {exp.parent} (bpd export --int), measured beside its "
                       f"shipped kernel by bpd bench {exp.parent}" if (exp.parent / "export.json").is_file() else
                       f"{exp}: the export has no export_report.json; run `bpd export` again")
    if t := next((t for i, t in enumerate(cfg.targets) if t not in EMU_TARGETS or t in cfg.targets[:i]), None):
        raise BpdError(f"--targets names {t} twice (one column each)" if t in EMU_TARGETS else
                       f"unknown target {t!r}; choose from {', '.join(EMU_TARGETS)}")
    if cfg.teacher is not None and not Path(cfg.teacher).is_file():
        raise BpdError(f"{cfg.teacher}: no such file (--teacher)")
    if classical and cfg.teacher is not None:
        raise BpdError(f"{exp}: a classical controller has no teacher to compare with: leave out --teacher")
    check_output_dir(out := Path(cfg.out))
    work = out / "work"
    networks = {"classical" if classical else "student": exp}
    if (exp / "int8" / "policy_weights.c").is_file():
        networks["student_int8"] = exp / "int8"
    if (exp / "int" / "policy.c").is_file():
        networks["student_int"] = exp / "int"
    teacher, dataset = (None, None) if classical else _run_inputs(exp, cfg.teacher)
    teacher_note = None
    if teacher is not None:
        dense, tsrc = _check_teacher_fits(teacher, info, exp), teacher
        if dense.mean_clip is not None:  # a comparison of cost: the layers, without the clip no exported kernel holds
            teacher_note = (f"the teacher's layers, exported without its clip of the mean to +-{dense.mean_clip:g} "
                            f"before the {dense.output} (SAC trained with gSDE), which bpd's kernels do not hold")
            dense.mean_clip = None
            work.mkdir(parents=True, exist_ok=True)
            dense.save(tsrc := work / "teacher_layers.npz")
        tdir = work / "teacher_export"
        run_export(ExportConfig(source=str(tsrc), out=str(tdir), format="dense", kernel="generic", episodes=0,
                                parity_samples=2000, seed=cfg.seed, dataset=dataset))
        networks["teacher"] = tdir
    # the student file the export came from times torch and gives the peers the masked student; an export moved
    # without it (to another computer) is measured without those two
    gone = None if classical or path_from_record(str(info.get("source")), exp).is_file() else \
        path_from_record(str(info.get("source")), exp)
    if info.get("kind") == "student" and gone is None:
        networks["student_masked"] = _masked_export(info, exp, work / "student_masked")
    rng = np.random.default_rng(cfg.seed)
    obs = rng.normal(0, 0.3, size=(max(cfg.samples, 1), info["obs_dim"])).astype(np.float32)
    results: dict = {"export": str(exp), "teacher": str(teacher) if teacher else None, "networks": {},
                     "targets": cfg.targets, "tolerance": TOL, "kind": info.get("kind")}
    if teacher_note:
        results["teacher_note"] = teacher_note
    if gone is not None:
        results["source_note"] = (f"the export's source, {gone}, is not there: no torch row, and no masked student "
                                  "for the peers (bench the export where its student is for them)")
    for name, d in networks.items():
        onnx_dir = exp if name in ("student_int8", "student_int") else d
        rep = {"widths_after": info["widths"]} if name == "classical" else \
            json.loads((onnx_dir / "export_report.json").read_text())
        ref = CPolicy(d, build_dir=work / name / "ctypes").act(obs)
        net_res: dict = {"widths": rep["widths_after"], "runtimes": {}}
        impls: dict = {}
        if name == "student_masked":  # only peers run it: it is what they are handed without bpd
            net_res["note"] = "masked student, dead units kept"
        elif name == "classical":  # its C alone: no torch or ONNX form, no network for peers
            net_res["note"] = info.get("controller", "classical controller")
            impls = {"bpd-classical": ([d / "policy.c", d / "policy_weights.c", BENCH / "bench_bpd.c"], [d, BENCH],
                                       ["policy", "policy_weights"], False)}
        else:
            bpd_srcs = [d / "policy.c", d / "policy_weights.c", BENCH / "bench_bpd.c"]
            kind = json.loads((d / "export.json").read_text()).get("kernel", "generic") \
                if (d / "export.json").is_file() else "generic"
            if name == "student_int" or kind != "generic":  # the activation is compiled in
                impls = {f"bpd-{'integer' if name == 'student_int' else kind}":
                         (bpd_srcs, [d, BENCH], ["policy", "policy_weights"], False)}
            else:
                impls = {"bpd": (bpd_srcs, [d, BENCH], ["policy", "policy_weights"], False),
                         "bpd-fast-tanh": (bpd_srcs, [d, BENCH], ["policy", "policy_weights"], True)}
        if name not in ("student_int8", "student_int", "student_masked", "classical"):
            net_res["flash_report"] = rep["totals"]
            if name != "student" or gone is None:
                src = load_source(path_from_record(rep["source"], onnx_dir), each_call=True)  # torch as it runs it
                import torch
                torch.set_num_threads(1)
                with torch.no_grad():
                    fwd = lambda o, src=src: src.torch_forward(torch.as_tensor(o)[None])
                    net_res["runtimes"]["torch"] = {"host_median_ns": _median_ns(fwd, obs)}
            ort = OnnxPolicy(onnx_dir / "policy.onnx")
            net_res["runtimes"]["onnxruntime"] = {"host_median_ns": _median_ns(ort.act, obs)}
        if cfg.peers and name not in ("student_int8", "student_int", "classical"):
            s_, inc = make_emx(onnx_dir / "policy.onnx", work / name / "emx")
            impls["emx-onnx-cgen"] = (s_, inc, ["emx_model"], False)
            s_, inc = make_emlearn(onnx_dir / "policy.onnx", work / name / "emlearn")
            impls["emlearn"] = (s_, inc, ["bench_emlearn"], False)
        for impl, (srcs, inc, pol_objs, fast) in impls.items():
            # bpd's sources build with warnings as errors; peers' generated code and the glue that
            # includes their headers build with the same code-generation flags but their own warnings.
            strict = {BENCH / "bench_host.c", BENCH / "bench_main.c"} | (set(srcs) if impl.startswith("bpd") else set())
            r = {"host": host_c(srcs, inc, work / name / impl / "host", cfg.host_iters, strict, fast)}
            for t in cfg.targets:
                e = emulate_build(t, srcs, inc, work / name / impl / t, obs, info["act_dim"], strict, pol_objs, fast)
                e["max_abs_error_vs_host_c"] = float(np.abs(e.pop("outputs") - ref).max())
                r[t] = e
            net_res["runtimes"][impl] = r
        results["networks"][name] = net_res
    if classical:  # no floor of multiply-adds, no kernels chosen among, no teacher or peers to set it beside
        results["summary"] = {}
        return _write_results(results, cfg, out)
    student_rep = json.loads((exp / "export_report.json").read_text())
    floor = arithmetic_floor(student_rep)
    results["arithmetic_floor"] = floor
    k = student_rep.get("kernel") or {}
    if k.get("candidates"):  # the kernels `bpd export` built and measured to choose the shipped one
        results["export_kernels"] = export_kernels(k)
    _summarise(results, floor)
    return _write_results(results, cfg, out)


def export_kernels(k: dict) -> dict:
    """What bench reports of the kernels an export weighed (its report's `kernel` entry): each one's figures, the one
    shipped and the rule, and why each other did not ship (its verdict, or why auto did not build it)."""
    shipped = k.get("variant", k["kind"])
    return {"shipped": shipped, "rule": k["rule"], "measured_on": k.get("measured_on"),
            "integer_form": (k["candidates"].get("integer") or {}).get("form"),
            "candidates": {n: c.get("cost") for n, c in k["candidates"].items()},
            "verdicts": {n: c["verdict"] for n, c in k["candidates"].items() if c.get("verdict") and n != shipped}
            | (k.get("skipped") or {})}


def _write_results(results: dict, cfg: BenchConfig, out: Path) -> dict:
    results["markdown"] = markdown(results)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.plot:  # the plot first, the record last (each atomic): stopped while plotting, the previous set stays
        plot(results, out / "bench.png")
    write_text(out / "bench.md", results["markdown"] + "\n")
    write_json(out / "bench.json", results)
    return results


def _check_teacher_fits(teacher: Path, info: dict, exp: Path) -> Teacher:
    """The dense comparison needs the teacher of the export's task: one line naming both where the sizes differ;
    the teacher, read."""
    from training.teacher import load_teacher

    t = load_teacher(teacher)
    env = info.get("env_id")
    if (t.obs_dim, t.act_dim) != (int(info["obs_dim"]), int(info["act_dim"])) or (t.env_id and env
                                                                                  and t.env_id != env):
        raise BpdError(f"{teacher}: a teacher for {t.env_id or 'an unnamed task'} ({t.obs_dim} observations, "
                       f"{t.act_dim} actions), the export {exp} is for {env} ({info['obs_dim']}, {info['act_dim']}): "
                       "give --teacher the teacher of the export's task")
    return t


def _summarise(res: dict, floor: dict) -> None:
    """Ratios per target for each bpd variant: against the dense teacher, the floor and each peer
    (on the same collapsed student, and on the masked student a peer gets without bpd's collapse)."""
    nets = res["networks"]
    s: dict = {}
    for t in res["targets"]:
        for variant in [v for v in nets["student"]["runtimes"] if v.startswith("bpd")]:
            st = nets["student"]["runtimes"][variant][t]
            row = {"instructions": st["instructions_median"], "flash_bytes": st["flash_bytes"],
                   "instructions_vs_floor": st["instructions_median"] / floor["instructions"]}
            if "teacher" in nets:
                te = nets["teacher"]["runtimes"].get(variant, nets["teacher"]["runtimes"]["bpd"])[t]
                row["teacher_over_student_instructions"] = te["instructions_median"] / st["instructions_median"]
                row["student_over_teacher_policy_flash"] = st["policy_bytes"] / te["policy_bytes"]
                row["student_over_teacher_image_flash"] = st["flash_bytes"] / te["flash_bytes"]
            for net_name in ("student", "student_masked"):
                for peer in ("emx-onnx-cgen", "emlearn"):
                    p = nets.get(net_name, {}).get("runtimes", {}).get(peer, {}).get(t)
                    if p:
                        row[f"{peer} on {net_name}"] = {
                            "instructions_over_bpd": p["instructions_median"] / st["instructions_median"],
                            "flash_over_bpd": p["flash_bytes"] / st["flash_bytes"]}
            s.setdefault(t, {})[variant] = row
        si = nets.get("student_int", {}).get("runtimes", {}).get("bpd-integer", {}).get(t)
        if si:  # OUT/int's kernel, under its network's name: an export that ships an integer kernel has its own
            row = {"instructions": si["instructions_median"], "flash_bytes": si["flash_bytes"],
                   "instructions_vs_floor": si["instructions_median"] / floor["instructions"]}
            for v in [v for v in nets["student"]["runtimes"] if v.startswith("bpd")]:
                row[f"{v} instructions / {INT_ROW}"] = (nets["student"]["runtimes"][v][t]["instructions_median"]
                                                        / si["instructions_median"])
            s.setdefault(t, {})[INT_ROW] = row
    res["summary"] = s

