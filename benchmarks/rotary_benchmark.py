"""Rotary pendulum benchmark: the classical controller (energy swing-up + LQR) next to learned
controllers (teachers, BPD students), at nominal parameters and under perturbations, with their
Cortex-M4F cost and hardware-in-the-loop trials on the simulated rig.

    python benchmarks/rotary_benchmark.py [--teacher T.npz ...] [--student EXPORT_DIR ...]
                                          [--episodes 10] [--nominal-episodes 30] [--hil]

Every controller runs in its deployed form where one exists: the classical controller and students
as their exported C (ctypes), teachers as their numpy actor. Each condition uses the same seeds for
every controller (episode i: seed i). Writes benchmarks/results/rotary.json, rotary.md and
rotary/robustness.png; with --hil also rotary/hil/<name>-<mode>/summary.json. Each controller's model is
recorded by its hash (robustness_benchmark.model_key), which joins it to its robustness score in
robustness.json (benchmarks/robustness_benchmark.py), the table's robustness column.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from robustness_benchmark import model_key  # noqa: E402

from bpd.io import portable_path, write_json, write_text  # noqa: E402
from firmware_host.rig import load_rig  # noqa: E402
from firmware_host.rig.swingup import SwingUpEnv, wrap_angle  # noqa: E402

RIG = "rotary-pendulum"
SPEC = load_rig(RIG)  # every fact of the rig the benchmark states or uses (rate, limits, task) is its YAML's
ACTION_RANGE = 2 * float(SPEC.limits["action"])  # from -limit to +limit (V)
CONDITIONS: list[tuple[str, dict]] = [
    ("nominal", {}),
    *[(f"{k} {s:+d} %", {"scale": {k: 1 + s / 100}}) for k in ("mass", "length", "friction", "gain")
      for s in (-20, 20)],
    ("sensor noise 0.01 rad", {"sensor_noise": 0.01}),
    ("latency +1 tick", {"extra_latency": 1}),
    ("latency +2 ticks", {"extra_latency": 2}),
    ("action 8-bit", {"action_step": ACTION_RANGE / 255}),
    ("action 6-bit", {"action_step": ACTION_RANGE / 63}),
]


def rel(p: Path | str) -> str:
    return portable_path(Path(p).resolve())


def run_episodes(act, episodes: int, kwargs: dict) -> dict:
    """Episodes 0..n-1 on the rig's swing-up env under one condition: returns, success, time to upright."""
    env = SwingUpEnv(RIG, **kwargs)
    rets, succ, tup = [], [], []
    for i in range(episodes):
        obs, _ = env.reset(seed=i)
        ret, done = 0.0, False
        while not done:
            obs, r, term, trunc, info = env.step(np.asarray(act(obs), np.float32))
            ret += r
            done = term or trunc
        rets.append(ret)
        succ.append(bool(info["success"]))
        if info["success"]:
            tup.append(info["time_to_upright"])
    return {"episodes": episodes, "return_mean": float(np.mean(rets)), "return_std": float(np.std(rets)),
            "success_rate": float(np.mean(succ)), "time_to_upright_median_s": float(np.median(tup)) if tup else None,
            "returns": [round(r, 2) for r in rets]}


def trajectory(act, seed: int = 0) -> dict:
    """One nominal episode's true angles and applied voltage, for the trajectory plot."""
    env = SwingUpEnv(RIG)
    obs, _ = env.reset(seed=seed)
    th, al, v = [], [], []
    done = False
    while not done:
        a = np.asarray(act(obs), np.float32)
        obs, _, term, trunc, _ = env.step(a)
        x = env.plant.state()
        th.append(float(x[0]))
        al.append(float(wrap_angle(float(x[1]))))
        v.append(float(np.clip(a[0], -10, 10)))
        done = term or trunc
    return {"t": list(np.arange(1, len(th) + 1) * env.dt), "theta": th, "alpha": al, "volts": v}


def plot_trajectories(trajs: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(10, 7), sharex=True)
    for name, tr in trajs.items():
        al = np.asarray(tr["alpha"])
        al[1:][np.abs(np.diff(al)) > math.pi] = np.nan  # no line across the wrap at +-pi
        axes[0].plot(tr["t"], al, label=name, lw=1)
        axes[1].plot(tr["t"], tr["theta"], lw=1)
        axes[2].plot(tr["t"], tr["volts"], lw=0.6)
    axes[0].set_ylabel("pendulum (rad, 0 upright)")
    axes[1].set_ylabel("arm (rad)")
    axes[2].set_ylabel("voltage (V)")
    axes[2].set_xlabel("time (s)")
    axes[0].legend(fontsize=8)
    axes[0].set_title("Swing-up from hanging, nominal plant, seed 0")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def cost_states(act, n: int = 60) -> np.ndarray:
    """Observations a controller meets: every k-th tick of a nominal episode (swing-up and balance)."""
    env = SwingUpEnv(RIG)
    obs, _ = env.reset(seed=0)
    states = []
    for _ in range(env.max_steps):
        states.append(obs)
        obs, _, term, trunc, _ = env.step(np.asarray(act(obs), np.float32))
        if term or trunc:
            break
    idx = np.linspace(0, len(states) - 1, n).astype(int)
    return np.asarray(states, np.float32)[idx]


def device_cost(export_dir: Path, states: np.ndarray, work: Path) -> dict:
    """Cortex-M4F instructions per control tick (emulated, exact counts) and flash of the firmware."""
    from firmware_host.measure.bench import emulate_build
    from firmware_host.measure.build import BENCH, build_firmware_image, image_report

    srcs = [export_dir / "policy.c", export_dir / "policy_weights.c", BENCH / "bench_bpd.c"]
    e = emulate_build("cortex-m4f", srcs, [export_dir, BENCH], work / "emu", states, 1,
                      set(srcs) | {BENCH / "bench_main.c"}, ["policy", "policy_weights"])
    fw = image_report(build_firmware_image(export_dir, "cortex-m4f", work / "fw"), ["policy", "policy_weights"])
    return {"instructions_median": e["instructions_median"], "instructions_max": e["instructions_max"],
            "cycles_estimate": e["cycles_estimate"], "us_estimate_168mhz": round(e["us_estimate"], 2),
            "policy_flash_bytes": e["policy_bytes"],
            "firmware_flash_bytes": fw["flash_bytes"], "firmware_ram_bytes": fw["ram_bytes"],
            "states": len(states)}


def hil_trial(export_dir: Path, mode: str, episodes: int, out: Path, port: str = "sim") -> dict:
    """A trial at the rig's own period, swing-up success judged from the logged angles. port "sim": real time against
    the host-built simulated rig; "pil": the Cortex-M4F firmware image in QEMU, lockstep with the plant,
    where the on-device inference time is the policy call's instruction count (1 ns per instruction)."""
    from hil.ticklog import read_ticks
    from hil.trial import HilRunConfig, run_trial

    shutil.rmtree(out, ignore_errors=True)
    from bpd.errors import BpdError

    cfg = HilRunConfig(port=port, rig=RIG, policy=str(export_dir), mode=mode, episodes=episodes, out=str(out),
                       runtime="c", plots=False)
    try:
        s = run_trial(cfg)
        ended = "complete"
    except BpdError as e:  # e.g. the device's watchdog: the host missed 10 ticks in a row
        ended = str(e).replace(str(out), rel(out))
        if not (out / "summary.json").exists():  # the trial never started (an image that did not build or boot)
            return {"port": port, "mode": mode, "episodes": episodes, "ended": ended, "success_rate": 0.0,
                    "per_episode": [], "achieved_rate_hz": None, "deadline_misses": None, "ticks": 0,
                    "infer_ns_median": None, "host_step_us_p99": None, "summary": None}
        s = json.loads((out / "summary.json").read_text())
    ticks = read_ticks(out / "ticks.csv")
    env = SwingUpEnv(RIG)
    band, hold = env.task["upright_band"], env.hold_ticks
    per_ep = []
    for ep in range(episodes):
        rows = [t for t in ticks if int(t["episode"]) == ep]
        up = [abs(float(wrap_angle(float(t["obs1"])))) < band for t in rows]
        run = 0
        for u in up:
            run = run + 1 if u else 0
        ok = len(rows) >= env.max_steps and run >= hold
        per_ep.append({"ticks": len(rows), "success": ok,
                       "time_to_upright_s": (len(rows) - run) * env.dt if ok else None})
    (out / "ticks.csv").unlink(missing_ok=True)
    (out / "ticks_pil.csv").unlink(missing_ok=True)  # per-tick instruction counts: large, summarised below
    t = s["timing"]
    return {"port": port, "mode": mode, "episodes": episodes, "ended": ended,
            "success_rate": float(np.mean([e["success"] for e in per_ep])),
            "per_episode": per_ep, "achieved_rate_hz": round(t["achieved_rate_hz"], 1),
            "deadline_misses": t["deadline_misses"], "ticks": t["ticks"],
            "infer_ns_median": t["infer_ns"].get("median"), "host_step_us_p99": t["host_step_us"].get("p99"),
            "summary": rel(out / "summary.json")}


def bpd(*args: str) -> None:
    from bpd_app.cli import main as bpd_main

    if bpd_main(list(args)) != 0:
        raise SystemExit(f"bpd {' '.join(args)} failed")


def distill_students(teacher: str, seeds: list[int], work: Path, steps: int, dataset_steps: int,
                     eta_max: float) -> list[str]:
    """Teacher -> dataset -> BPD student -> export, one per seed; a stage whose output exists is reused."""
    exports = []
    for seed in seeds:
        w = work / f"student-s{seed}"
        w.mkdir(parents=True, exist_ok=True)
        if not (w / "dataset.npz").exists():
            bpd("collect", "--teacher", teacher, "--out", str(w / "dataset.npz"), "--steps", str(dataset_steps),
                "--seed", str(seed), "--noise", "0.1", "--no-progress")  # the committed students' noise
        if not (w / "run" / "student.pt").exists():
            resume = ["--resume"] if (w / "run").exists() else []
            bpd("distill", "--teacher", teacher, "--dataset", str(w / "dataset.npz"), "--out", str(w / "run"),
                "--steps", str(steps), "--gamma", "0.998", "--eta-max", str(eta_max), "--eval-every", "10000",
                "--eval-episodes", "3",
                "--no-unit-gates", "--finetune", "0.0", "--no-pair-partners", "--kl-warmup", "none",  # the paper's BPD
                "--seed", str(seed), "--no-progress", *resume)
        chosen = w / "run" / "student-keep99.pt"
        if not chosen.exists():
            # the run chose on its randomised evaluation plants, where a student that swings up but does not
            # hold scores within 2 % of one that does; the bar is on the nominal plant, within 1 % of the
            # teacher: so hand over the sparsest evaluated student that keeps 99 % of the teacher's return
            # there, on selection seeds (disjoint from the reporting episodes 0..29)
            bpd("student", "select", str(w / "run"), "--keep-return", "0.99", "--episodes", "10",
                "--env", f"firmware_host.rig:bpd/{RIG}-v0", "--out", chosen.name)
        if not (w / "export" / "export.json").exists():
            bpd("export", str(chosen), "--out", str(w / "export"), "--episodes", "3")
        exports.append(str((w / "export").resolve()))
    return exports


def load_controller(path: str):
    from bpd_app.evaluate import load_any

    m = load_any(path)
    return m.act, {"kind": m.kind, "params_total": m.params_total, "params_nonzero": m.params_nonzero}


def cycles(cost: dict) -> float:
    """Estimated Cortex-M4F cycles per tick (summaries from before cycles were kept: from the microseconds the
    same cycle model gave at 168 MHz)."""
    return cost["cycles_estimate"] if "cycles_estimate" in cost else round(cost["us_estimate_168mhz"] * 168)


def robustness_scores(res: dict, robust: dict) -> dict[str, dict | None]:
    """Each controller's robustness score in robustness.json (its rig's section): the scored controller whose
    recorded model key is this controller's; None where there is none (or this controller recorded no key)."""
    scored = robust.get("rigs", {}).get(res.get("rig", RIG), {}).get("controllers", {})
    by_key = {c["model_key"]: {"name": n, "overall": c["overall"]} for n, c in scored.items() if c.get("model_key")}
    return {n: by_key.get(c.get("model_key") or "") for n, c in res["controllers"].items()}


def markdown(res: dict, robust: dict | None = None, robust_md: str = "robustness.md") -> str:
    """rotary.md from rotary.json; `robust`, robustness.json's contents, gives the robustness column."""
    names = list(res["controllers"])
    rob = robustness_scores(res, robust or {})
    classical = res["controllers"].get("energy+LQR", {}).get("conditions", {}).get("nominal", {})
    hz, task, steps = 1e6 / SPEC.period_us, SPEC.raw["task_spec"], int(SPEC.raw["max_episode_steps"])
    best = 1 + float(task.get("energy_bonus", 0.0))  # upright at rest: (1 + cos 0) / 2 and the whole energy bonus
    lines = [f"# Rotary pendulum: swing-up and balance ({RIG}, {hz:g} Hz)", "",
             f"Command: `{res['command']}`", "",
             f"Success: upright within {task['upright_band']:g} rad for the last {task['hold_s']:g} s of a "
             f"{steps / hz:g} s episode started hanging. "
             f"Return: the env's reward summed (at most {best:g} per tick, {best * steps:g} per episode"
             + (f"; the nominal energy+LQR reaches {classical['return_mean']:.1f}" if classical else "") + ").", "",
             "Cost per tick: exact emulated instructions and estimated cycles (docs/cycle_model.md) of the kernel "
             "each export holds.", "",
             "## Nominal plant", "",
             "| controller | kind | nonzero params | success | time to upright (median) | return | "
             "M4F instructions / tick (median, max) | M4F cycles / tick (est.) | policy flash | firmware flash | "
             "robustness |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for n in names:
        c = res["controllers"][n]
        nom = c["conditions"]["nominal"]
        cost = c.get("device_cost") or {}
        tu = nom["time_to_upright_median_s"]
        r = rob[n]
        lines.append(f"| {n} | {c['kind']} | {c['params_nonzero']} | {nom['success_rate'] * 100:.0f} % "
                     f"({nom['episodes']} ep.) | {f'{tu:.2f} s' if tu is not None else '-'} | "
                     f"{nom['return_mean']:.1f} | "
                     + (f"{cost['instructions_median']}, {cost['instructions_max']} | {cycles(cost):.0f} | "
                        f"{cost['policy_flash_bytes']} B | {cost['firmware_flash_bytes']} B |" if cost
                        else "- | - | - | - |")
                     + (f" {r['overall']:.3f} |" if r else " - |"))
    scored = sorted(((robust or {}).get("rigs", {}).get(RIG, {}).get("controllers") or {}).items())
    keyed = [n for n, c in scored if c.get("model_key")]
    unkeyed = [n for n, c in scored if not c.get("model_key")]
    lines += ["", f"Robustness: the overall score in [robustness.md]({robust_md}) (six categories of imperfection, "
              "training/robustness.py) of the same model, joined by its hash (a teacher file's sha256; an export's "
              "model hash and kernel arithmetic). Scored there with their model's hash: "
              + (", ".join(keyed) or "none") + (f"; without (scored before hashes were recorded, so joined to no row): "
                                                f"{', '.join(unkeyed)}" if unkeyed else "")
              + ". '-': no score there is of this row's model, or this row's run recorded no hash (a run before the "
              "column)."]
    lines += ["", "## Robustness: success rate (return mean)", "",
              "| condition | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for cond, _ in CONDITIONS:
        cells = []
        for n in names:
            r = res["controllers"][n]["conditions"].get(cond)
            cells.append(f"{r['success_rate'] * 100:.0f} % ({r['return_mean']:.0f})" if r else "-")
        lines.append(f"| {cond} | " + " | ".join(cells) + " |")
    if res.get("hil"):
        lines += ["", f"## Hardware-in-the-loop at {hz:g} Hz", "",
                  "Port sim: the firmware core built for the host behind a pty, the MuJoCo plant beside it, real "
                  "time on this machine. Port pil: the Cortex-M4F firmware image in QEMU (STM32F405), the plant on "
                  "its second USART, lockstep; its on-device inference is the policy call's instruction count "
                  "(QEMU counts one instruction per nanosecond).", "",
                  "| controller | port | mode | episodes | success | achieved rate | deadline misses | "
                  "on-device inference (median) | host step p99 | ended |", "|---|---|---|---|---|---|---|---|---|---|"]
        for n, trials in res["hil"].items():
            for t in trials:
                lines.append(f"| {n} | {t.get('port', 'sim')} | {t['mode']} | {t['episodes']} | "
                             f"{t['success_rate'] * 100:.0f} % | "
                             + (f"{t['achieved_rate_hz']} Hz | {t['deadline_misses']} / {t['ticks']} | "
                                if t["ticks"] else "- | - | ")
                             + (f"{t['infer_ns_median']:.0f} ns | " if t['infer_ns_median'] else "- | ")
                             + (f"{t['host_step_us_p99']:.0f} us | " if t['host_step_us_p99'] else "- | ")
                             + f"{t['ended']} |")
    return "\n".join(lines) + "\n"


def plot(res: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(res["controllers"])
    conds = [c for c, _ in CONDITIONS]
    fig, axes = plt.subplots(2, 1, figsize=(12, 7), sharex=True)
    w = 0.8 / max(len(names), 1)
    x = np.arange(len(conds))
    for i, n in enumerate(names):
        c = res["controllers"][n]["conditions"]
        axes[0].bar(x + i * w, [c[k]["success_rate"] * 100 if k in c else np.nan for k in conds], w, label=n)
        axes[1].bar(x + i * w, [c[k]["return_mean"] if k in c else np.nan for k in conds], w, label=n)
    axes[0].set_ylabel("success rate (%)")
    axes[1].set_ylabel("return (mean)")
    axes[1].set_xticks(x + w * (len(names) - 1) / 2, conds, rotation=35, ha="right")
    axes[0].legend(fontsize=8)
    axes[0].set_title("Rotary pendulum swing-up: nominal plant and perturbations")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", action="append", default=[], help="teacher .npz (repeatable)")
    ap.add_argument("--student", action="append", default=[], help="student export directory (repeatable)")
    ap.add_argument("--episodes", type=int, default=10, help="episodes per perturbed condition")
    ap.add_argument("--nominal-episodes", type=int, default=30)
    ap.add_argument("--distill-seeds", type=int, nargs="*", default=[],
                    help="distill, export and add a BPD student of the first teacher for each seed")
    ap.add_argument("--distill-steps", type=int, default=60000,
                    help="gradient steps per student: the swing-up needs more than the balance tasks' 20,000")
    ap.add_argument("--eta-max", type=float, default=0.1,
                    help="KL weight of the students: at 1.0 (bpd distill's default) the KL prunes the swing-up "
                    "student faster than it learns to imitate, and no student swings up in 20,000 steps")
    ap.add_argument("--dataset-steps", type=int, default=200000,
                    help="ticks of teacher data per student (2500 per episode: 80 swing-ups by default)")
    ap.add_argument("--hil", action="store_true", help="also run real-time HIL trials (device and host mode)")
    ap.add_argument("--hil-episodes", type=int, default=3)
    ap.add_argument("--pil", action="store_true", help="with --hil, also run the trials on the Cortex-M4F image in "
                    "QEMU (bpd hil run --port pil); skipped, saying why, where qemu-system-arm is absent")
    ap.add_argument("--work", type=Path, default=Path("benchmarks/work/rotary"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--table-only", action="store_true", help="rewrite rotary.md from rotary.json")
    ap.add_argument("--robustness", type=Path, default=ROOT / "benchmarks" / "results" / "robustness.json",
                    help="robustness scores to join into the table by model (robustness_benchmark.py's)")
    args = ap.parse_args()
    rpath = args.robustness
    robust = json.loads(rpath.read_text()) if rpath.is_file() else None
    robust_md = Path(os.path.relpath(rpath.with_suffix(".md").resolve(), args.out.resolve())).as_posix()
    if args.table_only:
        res = json.loads((args.out / "rotary.json").read_text())
        res["markdown"] = markdown(res, robust, robust_md)
        write_json(args.out / "rotary.json", res)
        write_text(args.out / "rotary.md", res["markdown"])
        return
    args.teacher = [str(Path(t).resolve()) for t in args.teacher]
    args.student = [str(Path(s).resolve()) for s in args.student]
    os.chdir(ROOT)  # results record paths relative to the repository
    if args.distill_seeds:
        if not args.teacher:
            raise SystemExit("--distill-seeds needs --teacher")
        args.student += distill_students(args.teacher[0], args.distill_seeds, args.work, args.distill_steps,
                                         args.dataset_steps, args.eta_max)
    from firmware_host.rig.classical import export_classical

    work = args.work
    cx = work / "classical_export"
    export_classical(RIG, cx)
    controllers: dict[str, tuple[str, str | None]] = {"energy+LQR": (str(cx), str(cx))}
    for t in args.teacher:
        controllers[f"teacher {Path(t).stem}"] = (t, None)
    for s in args.student:
        p = Path(s)
        controllers[f"BPD student {p.parent.name if p.name == 'export' else p.name}"] = (s, s)
    argv = " ".join(a if not Path(a).is_absolute() else rel(a) for a in sys.argv[1:])
    res = {"command": f"python benchmarks/rotary_benchmark.py {argv}".strip(), "rig": RIG,
                 "conditions": {c: k for c, k in CONDITIONS}, "controllers": {}, "hil": {}}
    states = None
    trajs = {}
    for name, (path, export_dir) in controllers.items():
        act, meta = load_controller(path)
        entry = meta | {"source": rel(path), "model_key": model_key(path), "conditions": {}}
        t0 = time.time()
        for cond, kwargs in CONDITIONS:
            n = args.nominal_episodes if cond == "nominal" else args.episodes
            entry["conditions"][cond] = run_episodes(act, n, kwargs)
            print(f"{name:>28} | {cond:<22} success {entry['conditions'][cond]['success_rate'] * 100:5.1f} % "
                  f"return {entry['conditions'][cond]['return_mean']:8.1f}", flush=True)
        entry["seconds"] = round(time.time() - t0, 1)
        trajs[name] = trajectory(act)
        if export_dir:
            if states is None:  # the same observations for every exported controller
                states = cost_states(load_controller(str(cx))[0])
            entry["device_cost"] = device_cost(Path(export_dir), states, work / "cost" / name.replace(" ", "_"))
            if args.hil:
                missing = [t for t in ("qemu-system-arm", "arm-none-eabi-gcc") if not shutil.which(t)]
                ports = ["sim"] + (["pil"] if args.pil and not missing else [])
                if args.pil and missing:
                    print(f"PIL trials skipped: {' and '.join(missing)} not installed (make system-deps installs them)")
                stem = args.out / "rotary" / "hil" / name.replace(" ", "_")
                res["hil"][name] = [hil_trial(Path(export_dir), mode, args.hil_episodes,
                                              Path(f"{stem}{'' if port == 'sim' else '-' + port}-{mode}"), port)
                                    for port in ports for mode in ("device", "host")]
        res["controllers"][name] = entry
    res["markdown"] = markdown(res, robust, robust_md)
    write_json(args.out / "rotary.json", res)
    write_text(args.out / "rotary.md", res["markdown"])
    plot(res, args.out / "rotary" / "robustness.png")
    plot_trajectories(trajs, args.out / "rotary" / "swingup.png")
    print(res["markdown"])


if __name__ == "__main__":
    main()
