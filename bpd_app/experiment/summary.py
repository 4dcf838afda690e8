"""A finished cell's summary (result.json): the figures read from its run directory (evaluation, training
curve, export, the Cortex-M4F measurement, the machine) and the summary assembled from them."""

from __future__ import annotations

import json
from pathlib import Path

from bpd.errors import BpdError
from bpd_app.experiment.plan import Cell, Plan
from training.envs import early_where_teacher_finished, share_of_teacher

# D4RL normalisation references (random, expert) for the locomotion tasks.
D4RL_REFS = {"HalfCheetah": (-280.178953, 12135.0), "Hopper": (-20.272305, 3234.3),
             "Walker2d": (1.629008, 4592.3)}
BENCH_TARGET = "cortex-m4f"


def d4rl_score(env_id: str, ret: float) -> float | None:
    key = env_id.split("-")[0]
    if key not in D4RL_REFS:
        return None
    lo, hi = D4RL_REFS[key]
    return 100.0 * (ret - lo) / (hi - lo)


def _read_json(p: Path) -> dict | None:
    """A JSON object from p; None where there is none (missing, corrupt, not an object)."""
    try:
        obj = json.loads(p.read_text())
    except (OSError, ValueError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None
    return obj if isinstance(obj, dict) else None


def _cycles(bench: dict) -> float | None:
    """Estimated Cortex-M4F cycles of a cell's bench figures (older summaries kept only the microseconds the
    same cycle model gave at the target's clock)."""
    from firmware_host.measure.build import TARGETS

    if bench.get("cycles") is not None:
        return float(bench["cycles"])
    us = bench.get("us_estimate")
    return None if us is None else round(us * TARGETS[BENCH_TARGET]["clock_mhz"])


def _bench_figures(bench: dict) -> dict:
    """Cortex-M4F cost of the student from a `bpd bench` result: the bpd kernel with the fewest estimated
    cycles (the export's own kernel; for the generic one, the cheaper of its two tanh builds)."""
    net = (bench.get("networks") or {}).get("student") or {}
    best = None
    for impl, per_target in (net.get("runtimes") or {}).items():
        if not impl.startswith("bpd"):
            continue
        r = (per_target or {}).get(BENCH_TARGET)
        cost = lambda x: (x.get("cycles_estimate") or 0, x["instructions_median"])
        if r and (best is None or cost(r) < cost(best[1])):
            best = (impl, r)
    if best is None:
        return {}
    impl, r = best
    scratch = (net.get("flash_report") or {}).get("ram_activation_bytes")
    stack = r.get("policy_stack_bytes")
    return {"kernel": impl, "instructions": r["instructions_median"], "us_estimate": r.get("us_estimate"),
            "cycles": r.get("cycles_estimate"),
            "policy_bytes": r.get("policy_bytes"), "image_flash_bytes": r.get("flash_bytes"),
            "weights_flash_bytes": (net.get("flash_report") or {}).get("flash_bytes"),
            # the policy's RAM: the caller's scratch (two activation buffers, from the export) and the static
            # worst-case stack of bpd_policy_run and its callees in the linked image
            "scratch_bytes": scratch, "policy_stack_bytes": stack,
            "policy_ram_bytes": scratch + stack if scratch is not None and stack is not None else None,
            # the DSP integer kernel the export built and measured beside the float kernels (bpd export ships it
            # where it keeps the float kernel's return, a check the cells' export skips: --episodes 0)
            "integer": _integer_figures(bench)}


def _integer_figures(bench: dict) -> dict | None:
    """The integer kernel's Cortex-M4F instructions, estimated cycles and policy flash from a bench result's
    record of the export's kernel candidates (None where the export did not build or measure it)."""
    ek = bench.get("export_kernels") or {}
    c = (ek.get("candidates") or {}).get("integer")
    if not c:
        return None
    return {"instructions": c["instructions"], "cycles": c["cycles"], "flash_bytes": c["flash_bytes"]} | (
        {"form": ek["integer_form"]} if ek.get("integer_form") else {})  # the kernel's form (benches since it is kept)


def _machine() -> dict:
    """What the cell's figures were computed on. Training and evaluation agree to the bit between
    machines whose torch CPU kernels are of one kind (`torch_cpu_capability`: AVX2, AVX512, ...), not
    between kinds (floating point differs, and locomotion episodes diverge from it)."""
    import platform

    import torch
    model = ""
    try:
        model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                      if ln.startswith("model name")), "")
    except OSError:
        pass
    return {"processor": model or platform.processor(), "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}


def _curve(metrics: Path) -> dict | None:
    """A run's periodic evaluations, small enough to commit: gradient step, return and (for the runs
    that interact with the environment) environment steps."""
    import csv

    if not metrics.exists():
        return None
    with open(metrics, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("eval/return_mean")]
    if not rows:
        return None
    curve = {"step": [int(float(r["step"])) for r in rows],
             "return": [round(float(r["eval/return_mean"]), 2) for r in rows]}
    if rows[0].get("env_steps"):
        curve["env_steps"] = [int(float(r["env_steps"])) for r in rows]
    return curve


def _online_train_summary(product: Path) -> dict:
    """What a run that trains online from scratch (`bpd teacher train`, e.g. online-sac-small) leaves in
    its policy file, as a training summary: environment steps, the actor's widths, the periodic
    evaluations against environment steps and the evaluation it kept. {} for any other product."""
    if product.suffix != ".npz" or not product.is_file():
        return {}
    from training.teacher import load_teacher
    try:
        t = load_teacher(product)
    except BpdError:
        return {}  # not a policy in the teacher format (a baseline's, whose run writes its own summary)
    train = t.train or {}
    if not train.get("history"):
        return {}
    hist = train["history"]
    cfg = train.get("config") or {}
    steps = [int(h["step"]) for h in hist]
    grad = [_sac_grad_steps(x, cfg) for x in steps]
    return {"seconds": train.get("seconds"), "env_steps": train.get("steps"), "steps": train.get("steps"),
            "grad_steps": _sac_grad_steps(train.get("steps"), cfg),
            "hidden": [int(w.shape[0]) for w in t.weights[:-1]], "control": "student",
            "selection": {"chosen": {"step": train.get("best_step")},
                          "rule": f"best periodic evaluation ({cfg.get('eval_episodes', '?')} episodes, training "
                                  "seeds)"},
            "curve": {"step": grad if None not in grad else steps,
                      "return": [round(float(h["return_mean"]), 2) for h in hist], "env_steps": steps}}


def _sac_grad_steps(steps: int | None, cfg: dict) -> int | None:
    """An off-policy learner's updates (`bpd teacher train`: one gradient step every train_freq
    environment steps once learning starts)."""
    if steps is None or cfg.get("learning_starts") is None:
        return None
    return max(0, int(steps) - int(cfg["learning_starts"])) // max(1, int(cfg.get("train_freq") or 1))


def _last_evals(metrics: Path, n: int = 3) -> list[float] | None:
    """The last n periodic evaluation returns of a run that logs metrics.csv (training stability)."""
    import csv

    if not metrics.exists():
        return None
    with open(metrics, newline="") as f:
        vals = [float(r["eval/return_mean"]) for r in csv.DictReader(f) if r.get("eval/return_mean")]
    return vals[-n:] or None


def shipped_nonzero(product: Path) -> int | None:
    """Nonzero parameters of what an export of the product would ship (its collapse: units with no path from
    input to output gone); None where the product has no such network."""
    from export.collapse import collapse
    from export.export import load_source
    try:
        return collapse(load_source(product).policy).params_nonzero
    except BpdError:
        return None


def _cell_result(plan: Plan, cell: Cell, spec: dict, train: dict, ev: dict, tev: dict, export_info: dict | None,
                 bench: dict, train_seconds: float, shipped: int | None = None) -> dict:
    """The small summary of a finished cell that tables read (no absolute paths)."""
    from bpd_app.methods import get

    uses_dataset = get(spec["method"]).uses_dataset  # a method without its own count used the plan's dataset
    t_ret = tev.get("return_mean")
    t_total = tev.get("params_total")
    early = early_where_teacher_finished(ev.get("terminated", []), tev.get("terminated", []))
    # the deployable size: the collapsed export's count (dead units removed), else the product's collapse's
    nonzero = export_info.get("params_nonzero") if export_info else shipped if shipped is not None else ev.get(
        "params_nonzero")
    seconds = train.get("seconds")
    if seconds is None:
        seconds = round(train_seconds, 1)
    # a distillation records no environment steps of its own: the dataset's, and the steps its fine-tune's student
    # drove the task for (--finetune-visits: a budget on top of the dataset's, which the cell's count left out)
    env_steps = train.get("env_steps", plan.cell_dataset(cell.label)["steps"] + int(
        (train.get("visits") or {}).get("env_steps") or 0) if uses_dataset else None)
    return {
        "env": cell.env, "label": cell.label, "method": spec["method"], "seed": cell.seed, "args": spec["args"],
        "eval": {k: ev.get(k) for k in ("episodes", "seeds", "return_mean", "return_std", "return_min", "return_q1",
                                        "return_median", "return_q3", "return_max", "early_terminations",
                                        "returns", "terminated")},
        "teacher": {"return_mean": t_ret, "params_total": t_total, "early_terminations": tev.get("early_terminations")},
        "return_vs_teacher": share_of_teacher(ev["return_mean"], t_ret) if t_ret and ev.get("return_mean") is not None
        else None,  # a negative (cost) return's share as selection reads it
        "d4rl_score": d4rl_score(cell.env, ev["return_mean"]) if ev.get("return_mean") is not None else None,
        "early_terminations_where_teacher_finished": early,
        "params_nonzero": nonzero, "params_total": ev.get("params_total"),
        "weights_removed_vs_teacher": (1.0 - nonzero / t_total) if nonzero is not None and t_total else None,
        "train": {"seconds": seconds, "steps": train.get("steps"), "hidden": train.get("hidden"),
                  "grad_steps": train.get("grad_steps", train.get("steps")),
                  "env_steps": env_steps,
                  "control": train.get("control"), "nonzero_budget": train.get("nonzero_budget"),
                  "teacher_distribution": train.get("teacher_distribution"),
                  "teacher_value": train.get("teacher_value"), "visited_spread": train.get("visited_spread"),
                  "selection": (train.get("selection") or {}).get("chosen"),
                  "selection_seeds": (train.get("selection") or {}).get("select_seeds"),
                  "pruning_rule": train.get("pruning_rule"),
                  "selection_rule": (train.get("selection") or {}).get("rule")},
        "export": ({"widths": export_info.get("widths"), "params_nonzero": export_info.get("params_nonzero"),
                    "model_hash": export_info.get("model_hash")} if export_info else None),
        "bench": bench or None,
    }
