"""Kernel benchmark: the generated and integer kernels next to the generic kernel, the dense peers
and the arithmetic floor, on the same collapsed students; closed-loop returns of the integer kernel.

    python benchmarks/kernel_benchmark.py [--work benchmarks/work] [--episodes 30]

Students (made by benchmarks/work/students.sh and students_rest.sh with `bpd` commands; stages
whose outputs exist are reused; every training run under `nice -n 10` on a shared 2-core machine):
  pendulum-fixture  tests/fixtures/pendulum_export (4-5-4-1, committed); its integer kernel is
                    calibrated on the InvertedPendulum-v5 dataset below (the fixture ships without one)
  ip-tanh, ip-relu  InvertedPendulum-v5: SAC teacher (default budget; stopped at the env's threshold
                    after 15,000 steps), 50,000 collected steps, distillation 20,000 steps (tanh) or
                    10,000 steps (`--activation relu`), 64-64 students
  idp-tanh          InvertedDoublePendulum-v5: the best snapshot (return 9333 over 10 episodes) of a
                    TD3 teacher training then running on the machine (150,000-step budget), 30,000
                    collected steps, distillation 10,000 steps (a weak student: about 1,700-2,400)
  cartpole-tanh     desktop-cartpole rig env: SAC teacher, 40,000 steps (best return 587 of 1000 at
                    35,000: a weak teacher), 30,000 collected steps, distillation 10,000 steps

For each: Cortex-M4F instructions (exact, unicorn) of the generic kernel (libm tanhf and the fast
tanh), the generated kernel (tanh chosen for 1e-5 parity, libm tanhf, and a 1e-3 budget), emlearn and
emx-onnx-cgen (libm tanhf); Cortex-M0+ instructions of the generic float kernel against the integer
kernel; returns over EPISODES episodes of the float student (generated kernel, C), the integer kernel
and the loose-tanh kernel in the environment, and for the rig student on the simulated rig in
device mode (lockstep; the InvertedPendulum student on the gym-inverted-pendulum rig too).
Writes benchmarks/results/kernels.json and kernels.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from hil_benchmark import bpd  # noqa: E402  (the `bpd` command as a user runs it)

STUDENTS = {  # name: (run dir under WORK or fixture path, env id, rig for the simulated-rig trial)
    "pendulum-fixture": ("fixture", "InvertedPendulum-v5", None),
    "ip-tanh": ("ip/run_tanh", "InvertedPendulum-v5", "gym-inverted-pendulum"),
    "ip-relu": ("ip/run_relu", "InvertedPendulum-v5", None),
    "cartpole-tanh": ("cartpole/run_tanh", "firmware_host.rig:bpd/desktop-cartpole-v0", "desktop-cartpole"),
    "idp-tanh": ("idp/run_tanh", "InvertedDoublePendulum-v5", None),
}
LOOSE = 1e-3
SEED = 0


def fixture_exports(w: Path, ip_dataset: Path) -> None:
    """The committed fixture as generic, generated, loose and integer exports (no checkpoint: the
    collapsed network is read back from policy.onnx, parity is against onnxruntime)."""
    from export.c_export import KERNEL_DIR, KERNEL_FILES
    from export.codegen import collapsed_from_export, select_tanh
    from export.fixed_point import generate_int_kernel, quantise
    from export.onnx_export import OnnxPolicy
    from training.collect import load_dataset

    fx = ROOT / "tests" / "fixtures" / "pendulum_export"
    info = json.loads((fx / "export.json").read_text())
    net = collapsed_from_export(fx)
    gen = w / "generic"
    shutil.copytree(fx, gen, dirs_exist_ok=True)
    for f in KERNEL_FILES:
        shutil.copyfile(KERNEL_DIR / f, gen / f)
    calib = load_dataset(ip_dataset, net.obs_dim).observations
    rng = np.random.default_rng(SEED)
    obs = np.concatenate([calib[rng.choice(len(calib), 5000, replace=False)],
                          rng.uniform(calib.min(0), calib.max(0), size=(5000, net.obs_dim))]).astype(np.float32)
    ref = OnnxPolicy(fx / "policy.onnx").act(obs)
    cmd = "python benchmarks/kernel_benchmark.py (fixture)"
    from export.c_export import CPolicy

    for name, budget in (("generated", 1e-5), ("loose", LOOSE)):
        form, tried = select_tanh(net, w / name, info["source_sha256"], cmd, obs, ref, budget, w / "build" / name)
        (w / name / "export.json").write_text(json.dumps(info | {"kernel": "generated"}))
        err = float(np.abs(CPolicy(w / name).act(obs) - ref).max())
        (w / name / "kernel.json").write_text(json.dumps({"tanh": form.name, "tanh_candidates": tried,
                                                          "parity": {"c_vs_onnxruntime": err, "states": len(obs)}}))
    q = quantise(net, calib, f"dataset {ip_dataset.relative_to(ROOT)}")
    d = w / "generic" / "int"
    generate_int_kernel(net, q, d, info["source_sha256"], cmd + " --int")
    (d / "export.json").write_text(json.dumps(info | {"kernel": "integer"}))
    e = np.abs(CPolicy(d).act(obs) - ref)
    (d / "int_report.json").write_text(json.dumps({
        "calibration": q.calibration, "max_abs_error_vs_float": float(e.max()),
        "mean_abs_error_vs_float": float(e.mean()),
        "max_error_vs_action_range": float((e / (net.action_high - net.action_low)).max()),
        "reference": "onnxruntime on the fixture's policy.onnx"}))


def run_exports(run: Path, w: Path, work: Path) -> None:
    """Generic (+ integer), generated and loose-tanh exports of a run; the dataset (parity states and the
    integer kernel's calibration) and teacher named in the run's config, relative to the work directory
    the students were made in."""
    from bpd.io import path_from_record

    cfg = json.loads((run / "config.json").read_text())

    def recorded(k: str) -> str:  # relative to the run (older runs: to the work directory)
        beside = path_from_record(cfg[k], run)
        return str(beside if beside.exists() else work / cfg[k])

    given = ["--dataset", recorded("dataset"), "--teacher", recorded("teacher"), "--episodes", "0"]
    if not (w / "generic" / "export.json").is_file():
        bpd("export", str(run), "--out", str(w / "generic"), "--int", *given)
    if not (w / "generated" / "export.json").is_file():
        bpd("export", str(run), "--out", str(w / "generated"), "--kernel", "generated", *given)
    if not (w / "loose" / "export.json").is_file():
        bpd("export", str(run), "--out", str(w / "loose"), "--kernel", "generated", "--tanh-budget", str(LOOSE),
            *given)


def emulate(target: str, d: Path, work: Path, obs: np.ndarray, act_dim: int, fast: bool = False) -> dict:
    from firmware_host.measure.bench import emulate_build
    from firmware_host.measure.build import BENCH

    srcs = [d / "policy.c", d / "policy_weights.c", BENCH / "bench_bpd.c"]
    strict = set(srcs) | {BENCH / "bench_main.c"}
    r = emulate_build(target, srcs, [d, BENCH], work, obs, act_dim, strict, ["policy", "policy_weights"], fast)
    r.pop("outputs")
    return {k: r[k] for k in ("instructions_median", "flash_bytes", "ram_bytes", "policy_bytes", "stack_bytes")}


def peers(onnx_path: Path, work: Path, obs: np.ndarray, act_dim: int) -> dict:
    from firmware_host.measure.bench import emulate_build, make_emlearn, make_emx
    from firmware_host.measure.build import BENCH

    out = {}
    for peer, make, pol in (("emx-onnx-cgen", make_emx, ["emx_model"]), ("emlearn", make_emlearn, ["bench_emlearn"])):
        srcs, inc = make(onnx_path, work / peer)
        r = emulate_build("cortex-m4f", srcs, inc, work / peer / "m4f", obs, act_dim, {BENCH / "bench_main.c"}, pol)
        out[peer] = {"instructions_median": r["instructions_median"], "flash_bytes": r["flash_bytes"]}
    return out


def returns(env_id: str, forms: dict, episodes: int) -> dict:
    from export.c_export import CPolicy
    from training.envs import evaluate

    out = {}
    for name, d in forms.items():
        r, lengths = evaluate(env_id, CPolicy(d).act, episodes, seed=SEED + 5000)
        out[name] = {"return_mean": float(np.mean(r)), "return_std": float(np.std(r)),
                     "episodes_full_length": int(sum(l == max(lengths) for l in lengths))}
    return out


def rig_returns(rig: str, forms: dict, episodes: int, w: Path) -> dict:
    out = {}
    for name, d in forms.items():
        log = w / "rig" / name
        shutil.rmtree(log, ignore_errors=True)
        bpd("hil", "run", "--port", "sim", "--rig", rig, "--policy", str(d), "--mode", "device", "--runtime", "c",
            "--episodes", str(episodes), "--out", str(log), "--lockstep", "--no-plots", "--seed", str(SEED + 5000),
            "--stall-timeout", "10")  # lockstep on a loaded machine: a tick may take longer than 1 s
        s = json.loads((log / "summary.json").read_text())
        r = [e["return"] for e in s["episodes"]]
        out[name] = {"return_mean": float(np.mean(r)), "return_std": float(np.std(r)),
                     "episodes_full_length": int(sum(e["length"] == max(x["length"] for x in s["episodes"])
                                                     for e in s["episodes"]))}
    return out


def measure(name: str, w: Path, env_id: str, rig: str | None, episodes: int) -> dict:
    from firmware_host.measure.bench import arithmetic_floor

    rep = json.loads((w / "generic" / "export_report.json").read_text())
    info = json.loads((w / "generic" / "export.json").read_text())
    act_dim = info["act_dim"]
    obs = np.random.default_rng(SEED).normal(0, 0.3, size=(5, info["obs_dim"])).astype(np.float32)
    libm_dir = w / "generated-libm"
    if not (libm_dir / "policy.c").is_file():
        from export.codegen import LIBM, collapsed_from_export, generate_kernel

        generate_kernel(collapsed_from_export(w / "generic"), libm_dir, info["source_sha256"],
                        "python benchmarks/kernel_benchmark.py (libm tanhf)", LIBM)
    e = w / "emu"
    m4 = {"generic-libm": emulate("cortex-m4f", w / "generic", e / "g", obs, act_dim),
          "generic-fast-tanh": emulate("cortex-m4f", w / "generic", e / "gf", obs, act_dim, fast=True),
          "generated": emulate("cortex-m4f", w / "generated", e / "gen", obs, act_dim),
          "generated-libm": emulate("cortex-m4f", libm_dir, e / "genl", obs, act_dim),
          "generated-loose": emulate("cortex-m4f", w / "loose", e / "loose", obs, act_dim)}
    m4 |= peers(w / "generic" / "policy.onnx", e / "peers", obs, act_dim)
    m0 = {"generic-libm": emulate("cortex-m0plus", w / "generic", e / "g0", obs, act_dim),
          "generic-fast-tanh": emulate("cortex-m0plus", w / "generic", e / "gf0", obs, act_dim, fast=True),
          "integer": emulate("cortex-m0plus", w / "generic" / "int", e / "i0", obs, act_dim)}
    floor = arithmetic_floor(rep)
    kern = {}
    for k in ("generated", "loose"):
        kr = w / k / "export_report.json"
        kern[k] = (json.loads(kr.read_text())["kernel"] if kr.is_file()
                   else json.loads((w / k / "kernel.json").read_text()))
    gen_rep = w / "generated" / "export_report.json"
    parity = json.loads(gen_rep.read_text())["parity"] if gen_rep.is_file() else json.loads(
        (w / "generated" / "kernel.json").read_text())["parity"]
    int_info = rep.get("int") or json.loads((w / "generic" / "int" / "int_report.json").read_text())
    int_info.pop("dir", None)
    forms = {"float (generated kernel)": w / "generated", "integer": w / "generic" / "int",
             f"generated, tanh budget {LOOSE:g}": w / "loose"}
    res = {"env_id": env_id, "widths": rep["widths_after"], "nonzero_weights": floor["macs"],
           "activation": info["activation"], "arithmetic_floor": floor, "cortex-m4f": m4, "cortex-m0plus": m0,
           "tanh_chosen": {k: v["tanh"] for k, v in kern.items()},
           "tanh_candidates": kern["generated"]["tanh_candidates"],
           "parity_generated": parity, "integer_vs_float": int_info, "returns": returns(env_id, forms, episodes)}
    if rig:
        res["rig"] = rig
        res["rig_returns"] = rig_returns(
            rig, {"float (generic kernel)": w / "generic", "integer": w / "generic" / "int"}, episodes, w)
    return res


def stack_figures(w: Path) -> dict:
    """Firmware images (core + board layer + policy) of one student: flash and RAM per part, the
    whole-image stack bound from the call graph, and the stack painted under emulation over a host
    session (HELLO, CONFIG device mode, START, three ticks)."""
    from firmware_host.measure.build import FIRMWARE_PARTS, build_firmware_image, image_report
    from firmware_host.measure.stack import painted_stack
    from firmware_host.wire.codec import encode

    rx = (encode("hello", 1, protocol=1) + encode("config", 2, period_us=0, watchdog_ticks=5, mode=1,
                                                   action_limit=3.0, pos_limit=1.0, angle_limit=1.0)
          + encode("start", 3))
    out = {}
    for label, d, target in (("float generic kernel", w / "generic", "cortex-m4f"),
                             ("float generic kernel", w / "generic", "cortex-m0plus"),
                             ("float generated kernel", w / "generated", "cortex-m4f"),
                             ("integer kernel", w / "generic" / "int", "cortex-m0plus")):
        img = build_firmware_image(d, target, w / "firmware" / f"{d.name}-{target}")
        rep = image_report(img, ["policy", "policy_weights"], FIRMWARE_PARTS)
        st = rep["stack"]
        painted = painted_stack(img.elf, target, rx)
        if painted["policy_calls"] <= 1:  # the boot self-test's alone
            raise SystemExit(f"{img.elf}: the painted session never ran the policy (its CONFIG refused?)")
        out[f"{label}, {target}"] = {
            "flash_bytes": rep["flash_bytes"], "ram_bytes": rep["ram_bytes"], "parts": rep["parts"],
            "stack_bound_bytes": st["total_bytes"], "stack_main_path_bytes": st["main"]["bytes"],
            "stack_main_path": st["main"]["chain"], "stack_interrupt_bytes": st["interrupt"]["bytes"],
            "exception_frame_bytes": st["interrupt"]["exception_frame"],
            "stack_tick_bytes": st["bpd_fw_tick"]["bytes"], "stack_policy_bytes": st["bpd_policy_run"]["bytes"],
            "stack_painted_bytes": painted["bytes"], "stack_painted_policy_calls": painted["policy_calls"]}
    return out


def summarise(r: dict) -> dict:
    m4, m0, fl = r["cortex-m4f"], r["cortex-m0plus"], r["arithmetic_floor"]["instructions"]
    bpd_best = min(m4[k]["instructions_median"]
                   for k in ("generated", "generated-libm", "generic-fast-tanh", "generic-libm"))
    peer_best = min(m4[p]["instructions_median"] for p in ("emx-onnx-cgen", "emlearn"))
    rets = r["returns"]
    fl_ret = rets["float (generated kernel)"]["return_mean"]
    s = {"m4f_generated_over_best_peer": m4["generated"]["instructions_median"] / peer_best,
         "m4f_best_bpd_over_best_peer": bpd_best / peer_best,
         "m4f_generated_over_floor": m4["generated"]["instructions_median"] / fl,
         "m4f_generated_libm_over_best_peer_libm": m4["generated-libm"]["instructions_median"] / peer_best,
         "m0plus_generic_libm_over_integer": (m0["generic-libm"]["instructions_median"]
                                              / m0["integer"]["instructions_median"]),
         "m0plus_generic_fast_over_integer": (m0["generic-fast-tanh"]["instructions_median"]
                                              / m0["integer"]["instructions_median"]),
         "integer_return_over_float": rets["integer"]["return_mean"] / fl_ret if fl_ret else None}
    if "rig_returns" in r:
        rr = r["rig_returns"]
        s["rig_integer_return_over_float"] = rr["integer"]["return_mean"] / rr["float (generic kernel)"]["return_mean"]
    return s


def markdown(res: dict) -> str:
    L = [f"Written by `{res['command']}` (this file again from its kernels.json: `--table-only`).", "",
         "Cortex-M4F instructions per inference (exact, emulated; median of 5 observations). Floor: one "
         "instruction per nonzero multiply-add, bias, activation and output op.", "",
         "| student | widths | act | floor | generic libm | generic fast | generated (tanh for 1e-5) | "
         f"generated libm | generated, budget {LOOSE:g} | emx-onnx-cgen (libm) | emlearn (libm) | "
         "generated / best peer | generated / floor |",
         "|" + "---|" * 13]
    for n, r in res["students"].items():
        m, s = r["cortex-m4f"], r["summary"]
        c = lambda k, m=m: m[k]["instructions_median"]
        L.append(f"| {n} | {'-'.join(map(str, r['widths']))} | {r['activation']} | "
                 f"{r['arithmetic_floor']['instructions']} | "
                 f"{c('generic-libm')} | {c('generic-fast-tanh')} | "
                 f"{c('generated')} ({r['tanh_chosen']['generated']}) | "
                 f"{c('generated-libm')} | {c('generated-loose')} ({r['tanh_chosen']['loose']}) | "
                 f"{c('emx-onnx-cgen')} | "
                 f"{c('emlearn')} | {s['m4f_generated_over_best_peer']:.2f}x | {s['m4f_generated_over_floor']:.1f}x |")
    L += ["", "Cortex-M0+ (no FPU) instructions per inference, and closed-loop returns "
          f"({res['episodes']} episodes, seeds 5000+):", "",
          "| student | generic float, libm | generic float, fast tanh | integer | float / integer | "
          "integer max abs error vs float (of action range) | return: float / integer / loose tanh | integer / float |",
          "|" + "---|" * 8]
    for n, r in res["students"].items():
        m, s, rt, iv = r["cortex-m0plus"], r["summary"], r["returns"], r["integer_vs_float"] or {}
        err = (f"{iv['max_abs_error_vs_float']:.2e} ({100 * iv['max_error_vs_action_range']:.2f} %)"
               if iv else "-")
        vals = " / ".join(f"{v['return_mean']:.1f}" for v in rt.values())
        L.append(f"| {n} | {m['generic-libm']['instructions_median']} | "
                 f"{m['generic-fast-tanh']['instructions_median']} | "
                 f"{m['integer']['instructions_median']} | {s['m0plus_generic_libm_over_integer']:.0f}x (fast: "
                 f"{s['m0plus_generic_fast_over_integer']:.0f}x) | {err} | {vals} | "
                 f"{s['integer_return_over_float']:.3f} |")
    for n, r in res["students"].items():
        if "rig_returns" in r:
            rr = r["rig_returns"]
            L.append(f"\nSimulated {r.get('rig', '')} rig ({n}, device mode, lockstep, {res['episodes']} episodes): "
                     f"float (generic kernel) "
                     f"{rr['float (generic kernel)']['return_mean']:.1f}, integer {rr['integer']['return_mean']:.1f} "
                     f"(ratio {r['summary']['rig_integer_return_over_float']:.3f}).")
    for n, st in res.get("stack", {}).items():
        L += ["", f"Firmware images of {n} (core + board layer + policy): flash / RAM per part, stack of the whole "
              "image from its call graph (main path + deepest interrupt + exception frame) and painted under "
              "emulation (main path, a host session and three ticks):", "",
              "| image | flash B | RAM B | policy | firmware core | board | other | stack bound B (main path + "
              "interrupt + frame) | painted main path B |", "|" + "---|" * 9]
        for k, v in st.items():
            p = v["parts"]
            cell = lambda x, p=p: f"{p[x]['flash_bytes']} / {p[x]['ram_bytes']}"
            L.append(f"| {k} | {v['flash_bytes']} | {v['ram_bytes']} | {cell('policy')} | {cell('firmware core')} | "
                     f"{cell('board')} | {cell('other')} | {v['stack_bound_bytes']} ({v['stack_main_path_bytes']} + "
                     f"{v['stack_interrupt_bytes']} + {v['exception_frame_bytes']}) | {v['stack_painted_bytes']} |")
    L += ["", "Criteria: " + json.dumps(res["criteria"])]
    return "\n".join(L)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=HERE / "work")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--episodes", type=int, default=30)
    ap.add_argument("--only", nargs="*", default=None, help="students to measure (default: every one made)")
    ap.add_argument("--table-only", action="store_true", help="rewrite kernels.md from kernels.json, run nothing")
    args = ap.parse_args()
    out_json = args.out / "kernels.json"
    res = json.loads(out_json.read_text()) if out_json.is_file() else {}
    if args.table_only:
        res["markdown"] = markdown(res)
        out_json.write_text(json.dumps(res, indent=2) + "\n")
        (args.out / "kernels.md").write_text(res["markdown"] + "\n")
        return
    res |= {"command": "python benchmarks/kernel_benchmark.py", "episodes": args.episodes}
    res.setdefault("students", {})
    for name, (where, env_id, rig) in STUDENTS.items():
        if args.only and name not in args.only:
            continue
        w = args.work / "kernels" / name
        if where == "fixture":
            if not (args.work / "ip" / "dataset.npz").is_file():
                continue
            if not (w / "generic" / "int" / "policy.c").is_file():
                fixture_exports(w, args.work / "ip" / "dataset.npz")
        else:
            if not (args.work / where / "student.pt").is_file():
                print(f"{name}: no student at {args.work / where}, skipped")
                continue
            run_exports(args.work / where, w, args.work)
        r = measure(name, w, env_id, rig, args.episodes)
        r["summary"] = summarise(r)
        res["students"][name] = r
        if name == "pendulum-fixture":
            res["stack"] = {name: stack_figures(w)}
        print(name, json.dumps(r["summary"]))
    ss = {n: r["summary"] for n, r in res["students"].items()}
    tanh = [n for n, r in res["students"].items() if r["activation"] == "tanh"]
    relu = [n for n, r in res["students"].items() if r["activation"] == "relu"]
    res["criteria"] = {
        "m4f_best_bpd_le_half_best_peer": all(s["m4f_best_bpd_over_best_peer"] <= 0.5 for s in ss.values()),
        "m4f_generated_le_8x_floor_tanh": all(ss[n]["m4f_generated_over_floor"] <= 8 for n in tanh),
        "m4f_generated_le_3x_floor_relu": all(ss[n]["m4f_generated_over_floor"] <= 3 for n in relu) if relu else None,
        "m4f_libm_not_behind_any_peer": all(s["m4f_generated_libm_over_best_peer_libm"] <= 1 for s in ss.values()),
        "m0plus_integer_ge_10x_fewer": all(s["m0plus_generic_libm_over_integer"] >= 10 for s in ss.values()),
        "integer_return_ge_99pct": all((s["integer_return_over_float"] or 0) >= 0.99 for s in ss.values()),
        "rig_integer_return_ge_99pct": all(s["rig_integer_return_over_float"] >= 0.99 for s in ss.values()
                                           if "rig_integer_return_over_float" in s),
        "stack_painted_le_bound": all(v["stack_painted_bytes"] <= v["stack_main_path_bytes"]
                                      for st in res.get("stack", {}).values() for v in st.values()),
        "generated_parity_le_1e-5": all(r["parity_generated"].get("c_vs_torch", r["parity_generated"].get(
            "c_vs_onnxruntime")) <= 1e-5 for r in res["students"].values()),
    }
    res["markdown"] = markdown(res)
    args.out.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(res, indent=2).replace(str(ROOT) + "/", "") + "\n")
    (args.out / "kernels.md").write_text(res["markdown"] + "\n")
    print(res["markdown"])


if __name__ == "__main__":
    main()
