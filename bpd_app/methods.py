"""Distillation methods the experiment runner knows, by name.

A method turns one cell of a plan (an environment, a seed, a teacher, a dataset, option
overrides) into the `bpd` command that trains it, so every cell is an ordinary run directory
that can be rerun by hand with the command recorded in its cell.json. Adding a method (an
ablation, a baseline) is one `register(Method(...))` call and a test.

Each method names the product its run leaves (a student .pt or a policy .npz in the run
directory); the runner evaluates, exports and measures that product the same way for every
method.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path

from bpd.errors import BpdError
from bpd_app.method_base import (  # noqa: F401  (re-exported: the runner and the tests read them here)
    METHODS,
    CellInputs,
    Method,
    bpd_collapsed_widths,
    collapsed_student,
    flags,
    needed_label,
    register,
    resume_flag,
    sibling_cell,
)
from training.envs import LOW_SHARE


def get(name: str) -> Method:
    if name not in METHODS:
        raise BpdError(f"unknown method {name!r} (known: {', '.join(sorted(METHODS))})")
    return METHODS[name]


def distill_command(c: CellInputs, extra: dict | None = None) -> list[str]:
    """`bpd distill` for the cell: the paper's BPD (training.distill_config.PAPER, the defaults before the
    pair-partner fine-tune became distill's default) with the method's options and the plan's over it, so
    that a method means what it meant when its cells ran, whatever distill's defaults become."""
    from training.distill_config import PAPER, DistillConfig

    args = {"seed": c.seed, "progress": False} | PAPER | (extra or {}) | c.args

    return ["distill", "--teacher", c.teacher, "--dataset", c.dataset, "--out", str(c.out),
            *flags(args, DistillConfig), *resume_flag(c.out)]


register(Method("bpd", "Bayesian Policy Distillation: value term, behaviour cloning, annealed KL to a "
                "log-uniform prior, pruning at the log alpha threshold", distill_command))


def _collapsed_widths(c: CellInputs, label: str) -> list[int]:
    try:
        return list(c.deps[label]["export"]["widths"][1:-1])
    except (KeyError, TypeError):
        try:
            return list(c.deps[label]["train"]["hidden"])
        except (KeyError, TypeError):
            raise BpdError(f"the {label} cell of {c.env} seed {c.seed} has no collapsed widths") from None


def _online_sac_command(c: CellInputs) -> list[str]:
    """SAC from scratch, no teacher, an actor of the BPD student's collapsed widths, the teacher's
    environment-step budget."""
    widths = _collapsed_widths(c, needed_label(c, c.args.get("size_from")))
    steps = c.args.get("steps") or int((c.teacher_meta.get("train") or {}).get("steps", 0))
    if steps <= 0:
        raise BpdError(f"{c.teacher}: the teacher records no training budget; give the method a steps option")
    args = {"algo": "sac", "hidden": widths, "critic_hidden": [256, 256], "steps": steps, "seed": c.seed,
            "eval_every": 10_000, "learning_starts": 10_000, "progress": False,
            "target_return": 1e30} | {k: v for k, v in c.args.items() if k not in ("size_from", "steps")}
    from training.teacher import TeacherTrainConfig

    work = c.out / "work"
    cmd = ["teacher", "train", "--env", c.env, "--out", str(c.out / "policy.npz"), "--work-dir", str(work),
           *flags(args, TeacherTrainConfig)]
    return cmd + (["--resume"] if (work / "config.json").exists() else [])


# A plan's env_args steps is the distillers' gradient-step budget; this method's budget is environment steps,
# the teacher's unless the method's own args give steps.
register(Method("online-sac-small", "SAC trained online from scratch without a teacher, actor of the BPD "
                "student's collapsed widths, given the teacher's environment-step budget", _online_sac_command,
                product="policy.npz", needs=("bpd",), uses_dataset=False, skips_env_args=("steps",),
                writes_summary=False))


# --------------------------------------------------------------------------- ablations of BPD
# Each is `bpd distill` with an option set (training/distill_config.py; the priors' KL terms and pruning
# rules are stated in training/priors.py, the deterministic students in training/ablations.py).


def _ablation(name: str, help: str, extra: dict) -> Method:
    return register(Method(name, help, lambda c: distill_command(c, extra)))


_ablation("bpd-eta-constant", "BPD with the KL weight at eta_max from the first step (the paper's schedule is "
          "linear: bpd)", {"eta_schedule": "constant"})
_ablation("bpd-eta-exponential", "BPD with the KL weight rising as 1 - e^{-5p} to eta_max over the same ramp",
          {"eta_schedule": "exponential"})
_ablation("bpd-prior-gaussian", "BPD with a Gaussian N(0, s^2) prior (closed-form KL), signal-to-noise pruning",
          {"prior": "gaussian"})
_ablation("bpd-prior-laplace", "BPD with a Laplace(0, b) prior (closed-form KL), signal-to-noise pruning",
          {"prior": "laplace"})
_ablation("bpd-prior-uniform", "BPD with a flat prior on [-a, a]: no sparsity by construction, nothing pruned",
          {"prior": "uniform"})
_ablation("bpd-no-value", "BPD without critics or the value term: behaviour cloning plus the KL",
          {"value_term": False})
_ablation("bpd-finetune", "BPD whose last fifth of training fine-tunes the collapsed deterministic student with the "
          "mask frozen (behaviour cloning and the value term, no KL, no weight noise)", {"finetune": 0.2})
_ablation("bpd-units", "BPD with a gate per hidden unit under the log-uniform prior (its KL weighted 16, a unit's "
          "cost in multiply-adds), so whole units are pruned", {"unit_gates": True})
_ablation("bpd-units-finetune", "bpd-units whose last fifth of training fine-tunes the collapsed deterministic "
          "student with the mask frozen", {"unit_gates": True, "finetune": 0.2})
_ablation("bpd-units-finetune-pairs", "bpd-units-finetune whose fine-tune also trains, from zero, the partner of every "
          "kept weight in the integer kernel's column pairs (weights one SMLAD multiplies anyway)",
          {"unit_gates": True, "finetune": 0.2, "pair_partners": True})
_ablation("bpd-units-finetune-pairs-half", "bpd-units-finetune-pairs whose fine-tune starts from the mask cut, by "
          "log alpha, to half its SMLADs on the DSP integer kernel: about half the integer kernel's cycles",
          {"unit_gates": True, "finetune": 0.2, "pair_partners": True, "prune_fraction": 0.5})
_ablation("bpd-units-finetune-pairs-quarter", "bpd-units-finetune-pairs whose fine-tune starts from the mask cut, "
          "by log alpha, to a quarter of its SMLADs on the DSP integer kernel",
          {"unit_gates": True, "finetune": 0.2, "pair_partners": True, "prune_fraction": 0.25})
_ablation("bpd-units-finetune-pairs-gated", "bpd-units-finetune-pairs with the gated KL schedule: the ramp advances "
          "only while the collapsed student's return is within --eta-gate of the teacher's (what the rotary "
          "swing-up needs from distill's defaults; here, what it costs on the other tasks)",
          {"unit_gates": True, "finetune": 0.2, "pair_partners": True, "eta_schedule": "gated"})
_ablation("bpd-units-finetune-pairs-warmup", "bpd-units-finetune-pairs whose schedule waits until the collapsed "
          "student's return is within --eta-gate of the teacher's (--kl-warmup gate), then runs its --steps",
          {"unit_gates": True, "finetune": 0.2, "pair_partners": True, "kl_warmup": "gate"})
_ablation("bpd-units-finetune-pairs-warmup-half", "bpd-units-finetune-pairs-warmup whose fine-tune starts from the "
          "mask cut, by log alpha, to half its SMLADs on the DSP integer kernel",
          {"unit_gates": True, "finetune": 0.2, "pair_partners": True, "kl_warmup": "gate", "prune_fraction": 0.5})
_ablation("l1-threshold", "deterministic student, BPD's loss minus the KL plus a scheduled L1 penalty, then a "
          "magnitude threshold", {"student": "l1"})


REFERENCE_ARG = "cycles_reference"  # a cycle cut's arg: a cost.json whose bpd rows set the budget, not the bpd cell


@functools.lru_cache(maxsize=4)
def _reference_rows(path: str, mtime_ns: int) -> dict[str, dict]:
    """A cost.json's rows by cell, read once for each version of the file (every cell's spec reads it)."""
    import json

    rows = json.loads(Path(path).read_text())["rows"]
    return {r["cell"]: r for r in rows if isinstance(r, dict) and isinstance(r.get("cell"), str)}


def reference_cycles(c: CellInputs) -> float | None:
    """The cycles a cut is sized against when its args name a `cycles_reference` (a cost.json of
    benchmarks/cost_benchmark.py, relative to the repository): its row of the `bpd` cell of the same
    environment and seed, measured with the DSP integer kernel. None when the args name none."""
    ref = c.args.get(REFERENCE_ARG)
    if ref is None:
        return None
    path = Path(ref) if Path(ref).is_absolute() else Path(__file__).resolve().parents[1] / ref
    try:
        rows = _reference_rows(str(path), path.stat().st_mtime_ns)
    except (OSError, ValueError, KeyError, TypeError):
        raise BpdError(f"{REFERENCE_ARG} {ref}: not a readable cost.json (rows of benchmarks/cost_benchmark.py)") \
            from None
    key = f"{c.env}/bpd/seed{c.seed}"
    row = rows.get(key)
    cycles = (((row or {}).get("cortex-m4f") or {}).get("integer") or {}).get("cycles")
    if not isinstance(cycles, (int, float)) or isinstance(cycles, bool) or not (row or {}).get("integer_form"):
        raise BpdError(f"{REFERENCE_ARG} {ref}: no row of {key} measured with the integer kernel")
    return float(cycles)


def bpd_cycles_budget(c: CellInputs, share: float) -> float:
    """The budget of the DSP kernel's layers (firmware_host/measure/dsp_meter.py) at which a student of this
    task costs `share` of the bpd cell's (same environment and seed) emulated integer-kernel cycles: the C
    around the layers costs the same on both sides (the task's dimensions), so the budget is the bpd
    student's layers less (1 - share) of its whole kernel, as its bench measured it (the cell's result).
    With a `cycles_reference` in the args, `share` of that file's bpd student of the same seed instead (a fixed
    reference, such as the benchmark's BPD students, whatever size this run's own bpd student came out): the
    bpd student's layers less its whole kernel plus `share` of the reference's."""
    from export.onnx_export import onnx_weights
    from firmware_host.measure.dsp_meter import mask_cycles

    label = needed_label(c)  # the plan's bpd row (a `needs: {bpd: LABEL}` names another)
    dep = c.deps.get(label) or {}
    integer = (dep.get("bench") or {}).get("integer") or {}
    if dep.get("student"):  # bpd compress: the bpd run's student file and its integer kernel measured there
        weights = list(collapsed_student(Path(dep["student"])).weights)
    else:
        onnx = sibling_cell(c, label) / "export" / "policy.onnx"
        weights = onnx_weights(onnx) if onnx.is_file() else []
    if not weights or "cycles" not in integer:
        raise BpdError(f"the {label} cell of {c.env} seed {c.seed} has no export measured with the integer kernel "
                       "(a run root that was lost): rerun that cell")
    layers = mask_cycles([w != 0 for w in weights], c.args.get("activation", "tanh"))
    ref = reference_cycles(c)
    target = share * (float(integer["cycles"]) if ref is None else ref)
    budget = layers - float(integer["cycles"]) + target
    if budget <= 0:
        whose = f"the bpd cell's {integer['cycles']:g}" if ref is None else f"{c.args[REFERENCE_ARG]}'s {ref:g}"
        raise BpdError(f"{share:g} of {whose} integer-kernel cycles ({c.env} seed {c.seed}) does not even pay for "
                       "the code around its layers")
    return budget


CYCLE_CUTS: set[str] = set()  # the methods sized against the bpd cell's cycles alone (bpd compress runs them)


def _cycle_cut(name: str, help: str, share: float, finetune: float, extra: dict | None = None) -> Method:
    """bpd-units-finetune-pairs-warmup cut at its fine-tune's start to `share` of the bpd cell's cycles."""
    CYCLE_CUTS.add(name)
    return register(Method(name, help, lambda c: distill_command(
        replace(c, args={k: v for k, v in c.args.items() if k != REFERENCE_ARG}), {
            "unit_gates": True, "finetune": finetune, "pair_partners": True, "kl_warmup": "gate",
            "prune_to_cycles": bpd_cycles_budget(c, share)} | (extra or {})), needs=("bpd",),
        select_episodes=(extra or {}).get("select_episodes"), reads_needed_products=True, needs_bench=True))


_cycle_cut("bpd-units-finetune-pairs-warmup-c50", "bpd-units-finetune-pairs-warmup whose fine-tune starts from the "
           "mask cut to half the bpd cell's (same seed) Cortex-M4F cycles on the DSP integer kernel, estimated from "
           "the code for each mask, the hidden units chosen too (--prune-to-cycles)", 0.5, 0.2)
_cycle_cut("bpd-units-finetune-pairs-warmup-c50-long", "bpd-units-finetune-pairs-warmup-c50 with the last half of "
           "training, not a fifth, on the cut mask (a longer fine-tune for the deeper cut), cut to 0.49 of the bpd "
           "cell's cycles: the estimate from unit weights misses the trained student's by a few cycles (its "
           "activations' shifts), which at 0.5 left it just above half", 0.49, 0.5)
_cycle_cut("bpd-units-finetune-pairs-warmup-c50-long-anneal", "bpd-units-finetune-pairs-warmup-c50-long whose "
           "fine-tune takes the actor's learning rate to zero on a half cosine (--finetune-anneal): Walker2d's cut "
           "students fell on 0 to 10 of the 10 selection episodes from one periodic evaluation to the next", 0.49, 0.5,
           {"finetune_anneal": True})
SURE_EPISODES = 30  # selection episodes of c50-long-sure: as many as the reporting episodes
_cycle_cut("bpd-units-finetune-pairs-warmup-c50-long-sure", "bpd-units-finetune-pairs-warmup-c50-long whose selection "
           f"judges each candidate on {SURE_EPISODES} selection episodes, not 10, and sets aside those that end early "
           "on one the teacher finishes (--select-no-falls): the cut students' falls on the reporting episodes came "
           "from candidates chosen on 10 episodes by return alone", 0.49, 0.5,
           {"select_no_falls": True, "select_episodes": SURE_EPISODES})
VISITS = 20_000  # environment steps: a fifth of the students plan's dataset (100,000 steps)
_cycle_cut("bpd-units-finetune-pairs-warmup-c50-visits", "bpd-units-finetune-pairs-warmup-c50-long whose fine-tune "
           f"also learns from {VISITS:,} environment steps driven by the cut student itself, every state labelled by "
           "the teacher (--finetune-visits, DAgger's aggregation: the states where the cut students fell are not in "
           "the teacher's data); its environment budget is the dataset's plus these", 0.49, 0.5,
           {"finetune_visits": VISITS})
_cycle_cut("bpd-units-finetune-pairs-warmup-c50-visits-sure", "bpd-units-finetune-pairs-warmup-c50-visits whose "
           f"selection judges each candidate on {SURE_EPISODES} selection episodes and sets aside those that end early "
           "on one the teacher finishes (--select-no-falls): the two remedies for the cut students' falls in one "
           "run, the teacher's labels on the states the student reaches and a selection that sees rare falls",
           0.49, 0.5, {"finetune_visits": VISITS, "select_no_falls": True, "select_episodes": SURE_EPISODES})
# issue 34, after a dense network at the c50 cuts' budget kept Hopper's teacher return as they do (hopper-dense):
# the deeper cut of 0.3 of the bpd cell's cycles, with the sparse mask and with whole units left dense
_cycle_cut("bpd-units-finetune-pairs-warmup-c30-visits-sure", "bpd-units-finetune-pairs-warmup-c50-visits-sure cut "
           "to 0.3 of the bpd cell's cycles, not 0.49", 0.3, 0.5,
           {"finetune_visits": VISITS, "select_no_falls": True, "select_episodes": SURE_EPISODES})
_cycle_cut("bpd-units-finetune-pairs-warmup-c30-visits-sure-dense", "bpd-units-finetune-pairs-warmup-c30-visits-sure "
           "whose cut keeps whole units and trains every weight between them (--cut-dense): the units BPD's log "
           "alpha ranks highest, as a dense network, which costs fewer cycles a weight than a sparse one", 0.3, 0.5,
           {"finetune_visits": VISITS, "select_no_falls": True, "select_episodes": SURE_EPISODES, "cut_dense": True})
# selection episodes of a reselection: a fall rate of 3 % goes unseen on 30 episodes with probability 0.40, on 100 0.05
RESELECT_EPISODES = 100
RESELECTED = "bpd-units-finetune-pairs-warmup-c50-visits-sure"


def _reselect_command(c: CellInputs) -> list[str]:
    """`bpd student select` over the candidates of the needed cell's run (same environment and seed), every one
    judged on RESELECT_EPISODES selection episodes beside the teacher, those with a fall set aside, the rule of the
    run's own selection otherwise (sparsest by its cost within the run's tolerance of the best); the student and the
    run's summary with this selection written to this cell's run directory."""
    from bpd.io import read_json
    from training.distill_config import DistillConfig

    if len(c.deps) != 1:
        raise BpdError(f"{c.env} seed {c.seed}: a reselection needs the result of one cell, got {len(c.deps)}")
    run = sibling_cell(c, next(iter(c.deps))) / "run"
    tol = read_json(run / "config.json", "run configuration").get(
        "select_tol", DistillConfig.__dataclass_fields__["select_tol"].default)
    return ["student", "select", str(run), "--rule", "sparsest-within", "--tol", str(tol), "--episodes",
            str(RESELECT_EPISODES), "--no-falls", "--out", str(c.out / "student.pt"),
            "--summary", str(c.out / "summary.json")]


register(Method(f"{RESELECTED}-reselect", f"the students of a {RESELECTED} cell's run chosen again, each candidate "
                f"judged on {RESELECT_EPISODES} selection episodes (not 30) with falls set aside: falls at a rate of "
                "a few per cent passed its 30 and showed on the reporting episodes (Hopper, Walker2d, HalfCheetah "
                "of the delivery plan); no training of its own (the needed cell's)", _reselect_command,
                needs=(RESELECTED,), select_episodes=RESELECT_EPISODES, supersedes=True, reads_needed_products=True))


EMA = 0.0005  # --finetune-ema: about the fine-tune actor's last 4,000 steps (periodic evaluations 5,000 apart)
EMA_EXTRA = {"finetune_visits": VISITS, "select_no_falls": True, "select_episodes": RESELECT_EPISODES,
             "finetune_ema": EMA}
_cycle_cut("bpd-units-finetune-pairs-warmup-c50-visits-sure-ema", f"{RESELECTED} whose fine-tune's students are a "
           f"moving average of the actor's weights (--finetune-ema {EMA:g}), chosen on {RESELECT_EPISODES} selection "
           "episodes with falls set aside: Walker2d's cut students fell on very different shares of the selection "
           "episodes from one periodic evaluation to the next of the same run, the actor's last updates deciding which",
           0.49, 0.5, EMA_EXTRA)
_cycle_cut("bpd-units-finetune-pairs-warmup-c50-visits-sure-ema-anneal", f"{RESELECTED}-ema whose fine-tune also takes "
           "the actor's learning rate to zero on a half cosine (--finetune-anneal): with the average alone, Walker2d's "
           "cut students fell least on the periodic evaluations just after the cut", 0.49, 0.5,
           EMA_EXTRA | {"finetune_anneal": True})

_cycle_cut("bpd-units-finetune-pairs-warmup-c50-visits-sure-ema-low", f"{RESELECTED}-ema whose selection also sets "
           "aside a candidate with a selection episode the teacher finishes at less than half the teacher's return on "
           f"that seed (--select-low-share {LOW_SHARE:g}): HalfCheetah's cut students flip onto their backs on a few "
           "per cent of episodes and run on to the end at a fraction of the return, which the early-end check cannot "
           "see", 0.49, 0.5,
           EMA_EXTRA | {"select_low_share": LOW_SHARE})

VISIT_NOISE = 0.3  # --finetune-visit-noise: the 0.3 of `bpd collect`'s default exploration, on the student's visits
_cycle_cut("bpd-units-finetune-pairs-warmup-c50-visits-sure-ema-low-vnoise", f"{RESELECTED}-ema-low whose visits "
           f"perturb the cut student's actions (--finetune-visit-noise {VISIT_NOISE:g}: Gaussian, that share of half "
           "the action range): the -ema-low row's HalfCheetah students chose candidates that never flipped on 100 "
           "selection episodes and still flipped on 1 of 30 reporting episodes; a selection cannot see a rare flip, "
           "so the teacher labels the states beside the student's own path, where a flip begins", 0.49, 0.5,
           EMA_EXTRA | {"select_low_share": LOW_SHARE, "finetune_visit_noise": VISIT_NOISE})

VISIT_NOISE_LOW = 0.1  # the plan's data noise: -vnoise's seed 0 flipped on no reporting episode but lost return
_cycle_cut("bpd-units-finetune-pairs-warmup-c50-visits-sure-ema-low-vnoise0.1", f"{RESELECTED}-ema-low-vnoise with "
           f"a third of the noise on the visits (--finetune-visit-noise {VISIT_NOISE_LOW:g}, the plan's data noise): "
           f"at {VISIT_NOISE:g}, HalfCheetah's seed 0 flipped on none of its reporting episodes but fell short of 99 % "
           "of the teacher's return", 0.49, 0.5,
           EMA_EXTRA | {"select_low_share": LOW_SHARE, "finetune_visit_noise": VISIT_NOISE_LOW})

VISITS_FULL = 100_000  # as many environment steps as the students plan's dataset
_cycle_cut("bpd-units-finetune-pairs-warmup-c50-visits-full", "bpd-units-finetune-pairs-warmup-c50-visits with "
           f"{VISITS_FULL:,} environment steps of the cut student's own states (as many as the dataset's, so that "
           "half the fine-tune's batches are drawn from them, not a sixth: Walker2d's cut students fell on 17-26 of "
           "their 35-42 visit episodes and on up to 11 of 30 reporting episodes with a sixth); its environment "
           "budget is twice the dataset's", 0.49, 0.5, {"finetune_visits": VISITS_FULL})


def _sized_like_bpd(c: CellInputs, extra: dict) -> list[str]:
    """The distill command with the student's widths taken from the bpd cell, whatever the plan's args say."""
    return distill_command(replace(c, args={k: v for k, v in c.args.items() if k != "hidden"}), extra)


def _bpd_result(c: CellInputs) -> dict:
    if len(c.deps) != 1:
        raise BpdError(f"{c.env} seed {c.seed}: expected the result of one bpd cell, got {len(c.deps)}")
    return next(iter(c.deps.values()))


def _magnitude_command(c: CellInputs) -> list[str]:
    """BPD's student shape and loss minus the KL, pruned by magnitude to the nonzero count BPD reached."""
    dep = _bpd_result(c)
    nonzero, hidden = dep.get("params_nonzero"), (dep.get("train") or {}).get("hidden")
    if not nonzero or not hidden:
        raise BpdError(f"the bpd cell of {c.env} seed {c.seed} records no nonzero count or widths")
    return _sized_like_bpd(c, {"student": "magnitude", "prune_to": int(nonzero), "hidden": list(hidden)})


def _dense_small_command(c: CellInputs) -> list[str]:
    """A dense deterministic student of BPD's collapsed widths, BPD's loss minus the KL."""
    widths = (_bpd_result(c).get("export") or {}).get("widths")
    if not widths:
        raise BpdError(f"the bpd cell of {c.env} seed {c.seed} was not exported; dense-small needs its collapsed "
                       "widths (plan with bench: true)")
    return _sized_like_bpd(c, {"student": "dense", "hidden": list(widths[1:-1])})


register(Method("magnitude-prune", "deterministic student, BPD's loss minus the KL, global magnitude pruning to "
                "the nonzero count of the bpd cell (same environment and seed), then fine-tuning",
                _magnitude_command, needs=("bpd",), sized_by_any_bpd=True,
                revision=2))  # 2: the count is the collapsed student's (training/live.py), as BPD's is
def _l1_size(c: CellInputs, units: bool) -> list[str]:
    """bpd-finetune whose fine-tune starts from the mask cut to the l1-threshold cell's nonzero count by log
    alpha (units: and to its number of hidden units): BPD at L1's size, or at L1's shape."""
    if len(c.deps) != 1:
        raise BpdError(f"{c.env} seed {c.seed}: expected the result of one l1-threshold cell, got {len(c.deps)}")
    nonzero = next(iter(c.deps.values())).get("params_nonzero")
    if not nonzero:
        raise BpdError(f"the l1-threshold cell of {c.env} seed {c.seed} records no nonzero count")
    extra: dict = {"finetune": 0.2, "prune_to": int(nonzero)}
    if units:  # its collapsed widths: from its export, else from its student file
        extra["max_units"] = int(sum(bpd_collapsed_widths(c, "l1-threshold")))
    return distill_command(c, extra)


register(Method("bpd-finetune-l1-size", "bpd-finetune whose fine-tune starts from BPD's mask cut, by log alpha "
                "over all layers, to the nonzero count of the l1-threshold cell (same environment and seed): BPD "
                "and L1 then a threshold at equal nonzero parameters", lambda c: _l1_size(c, False),
                needs=("l1-threshold",), revision=2))  # 2: --prune-to counts the collapsed student (training/live.py)
register(Method("bpd-finetune-l1-shape", "bpd-finetune-l1-size with also no more hidden units than the l1-threshold "
                "cell's collapsed student (the units of least signal removed first): equal weights and units, so "
                "equal activations and biases on the device", lambda c: _l1_size(c, True), needs=("l1-threshold",),
                revision=2))  # 2: --prune-to counts the collapsed student (training/live.py)
def l1_weights(c: CellInputs) -> list:
    """The weights of the l1-threshold cell's student (same environment and seed): those of its export, else
    of its student file collapsed."""
    cell = sibling_cell(c, "l1-threshold")
    if (cell / "export" / "policy.onnx").is_file():
        from export.onnx_export import onnx_weights

        return list(onnx_weights(cell / "export" / "policy.onnx"))
    if (cell / "run" / "student.pt").is_file():
        return list(collapsed_student(cell / "run" / "student.pt").weights)
    raise BpdError(f"the l1-threshold cell of {c.env} seed {c.seed} has neither an export nor a student file "
                   "(a run root that was lost): rerun that cell")


def l1_multiply_slots(c: CellInputs) -> int:
    """The DSP integer kernel's multiply-adds (training/pairs.py multiply_slots, summed over layers) of the
    l1-threshold cell's student."""
    from training.pairs import network_slots

    return network_slots(l1_weights(c))


def _l1_cycles(c: CellInputs) -> list[str]:
    """bpd-finetune whose fine-tune starts from BPD's mask cut to the l1-threshold cell's multiply-adds on the
    DSP integer kernel and its hidden units, the pair partners then filled: BPD at L1's cycles."""
    if len(c.deps) != 1:
        raise BpdError(f"{c.env} seed {c.seed}: expected the result of one l1-threshold cell, got {len(c.deps)}")
    return distill_command(c, {"finetune": 0.2, "pair_partners": True, "prune_to_pairs": l1_multiply_slots(c),
                               "max_units": int(sum(bpd_collapsed_widths(c, "l1-threshold")))})


register(Method("bpd-finetune-l1-cycles", "bpd-finetune whose fine-tune starts from BPD's mask cut, by log alpha "
                "over all layers, to the multiply-adds (SMLADs, a pair of columns each) that the l1-threshold "
                "cell's student (same environment and seed) costs the DSP integer kernel and to its hidden units, "
                "then trains also the pair partner of every kept weight: BPD and L1 then a threshold at equal "
                "integer-kernel cost", _l1_cycles, needs=("l1-threshold",), reads_needed_products=True))


def _l1_dsp_budget(c: CellInputs) -> dict:
    """The cut to the estimated Cortex-M4F cycles of the DSP integer kernel's layers that the l1-threshold cell's
    student costs (firmware_host/measure/dsp_meter.py, the same count on both masks) and to its hidden units."""
    from firmware_host.measure.dsp_meter import mask_cycles

    if len(c.deps) != 1:
        raise BpdError(f"{c.env} seed {c.seed}: expected the result of one l1-threshold cell, got {len(c.deps)}")
    weights = l1_weights(c)
    return {"prune_to_cycles": mask_cycles([w != 0 for w in weights], c.args.get("activation", "tanh")),
            "max_units": int(sum(bpd_collapsed_widths(c, "l1-threshold")))}


def _l1_dsp_cycles(c: CellInputs) -> list[str]:
    """bpd-finetune whose fine-tune starts from BPD's mask cut to L1's cycles and units (_l1_dsp_budget), the pair
    partners then filled."""
    return distill_command(c, {"finetune": 0.2, "pair_partners": True} | _l1_dsp_budget(c))


register(Method("bpd-finetune-l1-dsp-cycles", "bpd-finetune-l1-cycles cut instead to the estimated Cortex-M4F "
                "cycles of the DSP integer kernel's layers, read off their code for each mask, that the "
                "l1-threshold cell's student costs: equal SMLADs left the cut students 0.7-1.2 % above L1's "
                "cycles (the rows' grouping and input loads differ)", _l1_dsp_cycles, needs=("l1-threshold",),
                reads_needed_products=True))


def _l1_dsp_cycles_visits(c: CellInputs) -> list[str]:
    """The delivered students' recipe (bpd-units-finetune-pairs-warmup-c50-visits) cut to L1's cycles and units
    (_l1_dsp_budget) instead of half the bpd cell's."""
    return distill_command(c, {"unit_gates": True, "finetune": 0.5, "pair_partners": True, "kl_warmup": "gate"}
                           | _l1_dsp_budget(c) | {"finetune_visits": VISITS})


register(Method("bpd-units-finetune-pairs-warmup-l1-dsp-visits", "bpd-units-finetune-pairs-warmup-c50-visits (the "
                "delivered students' recipe) cut instead to the estimated DSP-kernel cycles and the hidden units of "
                "the l1-threshold cell's student: BPD and L1 at equal cycles, BPD with its visits",
                _l1_dsp_cycles_visits, needs=("l1-threshold",), reads_needed_products=True))
register(Method("dense-small", "dense deterministic student of the bpd cell's collapsed widths, BPD's loss "
                "minus the KL", _dense_small_command, needs=("bpd",), sized_by_any_bpd=True,
                needs_bench=True))


def _widest(fits, none: str) -> int:
    """The widest H (at most 256) with fits(H), fits all but monotone: doubling, bisection, then a few wider (a
    cycle estimate is not quite monotone in H: a wider layer may tile into fewer groups). none: the error when
    not even H = 1 fits."""
    if not fits(1):
        raise BpdError(none)
    lo, hi = 1, 2  # fits(lo), and hi the first power of two that does not
    while fits(hi):
        lo, hi = hi, 2 * hi
        if hi > 256:
            raise BpdError("the budget is beyond any dense student of at most 256 units a layer")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return max([lo] + [h for h in range(lo + 1, lo + 5) if fits(h)])


def dense_width(n_in: int, n_out: int, budget: int) -> int:
    """The widest H of an n_in-H-H-n_out dense network whose parameters, biases included, are at most budget."""
    return _widest(lambda h: n_in * h + h * h + h * n_out + 2 * h + n_out <= budget,
                   f"no dense network of two hidden layers has at most {budget} parameters")


def _dense_nonzero_command(c: CellInputs) -> list[str]:
    """A dense deterministic student of two equal hidden layers with at most the bpd cell's nonzero count of
    parameters, BPD's loss minus the KL: a plain small network as large as the sparse student is."""
    dep = _bpd_result(c)
    widths = (dep.get("export") or {}).get("widths")
    if not widths or not dep.get("params_nonzero"):
        raise BpdError(f"the bpd cell of {c.env} seed {c.seed} records no nonzero count or export (plan with bench: "
                       "true)")
    h = dense_width(int(widths[0]), int(widths[-1]), int(dep["params_nonzero"]))
    return _sized_like_bpd(c, {"student": "dense", "hidden": [h, h]})


def dense_cycles_width(n_in: int, n_out: int, budget: float, activation: str = "tanh") -> int:
    """The widest H of an n_in-H-H-n_out dense network whose DSP-kernel layers' estimated cycles
    (firmware_host/measure/dsp_meter.py, the estimate the cuts are sized with) are within budget."""
    import numpy as np

    from firmware_host.measure.dsp_meter import mask_cycles

    return _widest(lambda h: mask_cycles([np.ones((h, n_in), bool), np.ones((h, h), bool), np.ones((n_out, h), bool)],
                                         activation) <= budget,
                   f"no dense network of two hidden layers costs at most {budget:g} cycles in its layers")


def _dense_cycles_command(c: CellInputs, share: float, extra: dict | None = None) -> list[str]:
    """A dense deterministic student of two equal hidden layers at a cut's budget: the widest whose layers cost
    no more than the cut's (share of the bpd cell's integer-kernel cycles, the code around the layers the same)."""
    from training.teacher import load_teacher

    t = load_teacher(c.teacher)
    args = {k: v for k, v in c.args.items() if k != REFERENCE_ARG}
    h = dense_cycles_width(t.obs_dim, t.act_dim, bpd_cycles_budget(c, share), c.args.get("activation", "tanh"))
    return _sized_like_bpd(replace(c, args=args), {"student": "dense", "hidden": [h, h]} | (extra or {}))


def _dense_cycles(name: str, share: float, extra: dict | None = None) -> None:
    """dense-cNN: sized as the cNN cuts are (extra: distill options beside, as the -sure cuts' selection)."""
    chosen = (f"; chosen as the -sure cuts are, on {extra['select_episodes']} selection episodes with falls set aside"
              if extra and extra.get("select_no_falls") else "")
    CYCLE_CUTS.add(name)
    register(Method(name, "dense deterministic student of two equal hidden layers, the widest whose DSP integer "
                    f"kernel costs no more than {share:g} of the bpd cell's (same seed) estimated Cortex-M4F cycles"
                    + (f", as the {cut} cuts do" if (cut := name.removeprefix('dense-').removesuffix('-sure'))
                       in ("c50", "c30") else "") + "; BPD's loss minus the KL"
                    + chosen, lambda c: _dense_cycles_command(c, share, extra), needs=("bpd",),
                    select_episodes=(extra or {}).get("select_episodes"), reads_needed_products=True, needs_bench=True))


_dense_cycles("dense-c50", 0.49)
_dense_cycles("dense-c30", 0.3)
# chosen as the -visits-sure cuts are (30 selection episodes, falls set aside), so that an equal-cost comparison
# differs in the student alone (hc-dense, after delivery's dense-nonzero-c50 let a fall through on 10 episodes)
_SURE = {"select_no_falls": True, "select_episodes": SURE_EPISODES}
_dense_cycles("dense-c50-sure", 0.49, _SURE)
_dense_cycles("dense-c30-sure", 0.3, _SURE)
# below 0.3, where the dense network at 0.3 kept the teacher's return on every seed (Hopper: hopper-dense; the double
# pendulum: idp-dense-long): how far down a plain network keeps it (plan hopper-ladder)
_dense_cycles("dense-c20-sure", 0.2, _SURE)
# between 0.49 and 0.3 (idp-dense-long's -ref rows: on the double pendulum's seed 2 the network at 0.49 of the
# benchmark's BPD student kept the return at 0.55x of it on that student's kernel, the one at 0.3 did not keep it)
_dense_cycles("dense-c40-sure", 0.4, _SURE)
_dense_cycles("dense-c15-sure", 0.15, _SURE)
register(Method("dense-nonzero", "dense deterministic student of two equal hidden layers, the widest with no more "
                "parameters than the bpd cell's nonzero count, BPD's loss minus the KL", _dense_nonzero_command,
                needs=("bpd",), sized_by_any_bpd=True, needs_bench=True))


from bpd_app import baseline_methods  # noqa: E402,F401  (the distillation baselines register themselves)
