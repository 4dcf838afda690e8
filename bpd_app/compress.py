"""`bpd compress`: the project's methods on one teacher and dataset, and the cheapest student that keeps
the return.

Each method (bpd_app/methods.py: BPD, its variants, L1 then a threshold) trains a run of its own under
OUT/<method> with the `bpd distill` command the experiment runner would give it (resumable: a second
call continues where the first stopped). Every student each run evaluated is then judged on the
selection seeds, and measured on an emulated Cortex-M4F (`bpd student select --cost`); per run the
cheapest that keeps --keep-return of the teacher's return on those seeds is chosen, and of those the
cheapest over all runs is handed over as OUT/student.pt. The comparison goes beside it
(compress.json, compress.md). Seeds: the runs train with --seed, the selection uses the selection
seeds (training/README.md), never the reporting seeds: evaluate the result with `bpd evaluate`.
The dense networks run last, each with as many gradient steps as the longest run before it took (equal budgets:
BPD's warm-up lengthens its runs). Methods sized against another run (the cuts to half the paper BPD's Cortex-M4F
cycles, and the dense networks at 0.49 and 0.3 of its cycles) run after it, with
its student's DSP integer kernel measured here as their reference (compress.json records it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bpd.config import check_ranges, field
from bpd.errors import BpdError
from bpd.io import atomic_write, check_output_dir, read_json, write_json, write_text
from training.distill_config import SELECT_EPISODES as DISTILL_SELECT_EPISODES
from training.envs import LOW_SHARE, return_floor, share_of_teacher
from training.selection_config import COST_UNITS, COSTS, cost_of, cost_text, spread

# distill's default first (the fine-tune after the warm-up), then every method that gave the students plan's
# cheapest student keeping the teacher's return on some task and seed (benchmarks/results/delivered): the
# pair-partner fine-tune and its half cut, the paper's BPD and the cuts to half its cycles (which measure
# themselves against it), then L1 then a threshold; and plain dense networks at 0.49 and 0.3 of the bpd run's cycles
# (the paper BPD's: neither is a share of a cut): on Hopper alone (benchmarks/results/hopper-dense; one kind of
# machine, beside their own bpd cells) the dense network kept the teacher's return with no early end at 0.49 on 3 of
# 3 seeds, as BPD's cut did, and at 0.3 on every seed run where BPD's cuts to 0.3 fell short on some; on the double
# pendulum, HalfCheetah and Walker2d a dense network at the c50 cut's nonzero count fell short of the cut
# (benchmarks/results/delivery); on HalfCheetah at equal cycles (benchmarks/results/hc-dense) the dense network kept
# the return at 0.49 on 1 of 3 seeds, BPD's cut on 2, and nothing kept it at 0.3, so compress's choice across both
# was a dense network on one seed and BPD's cut on two; on the double pendulum, given at least the cuts' gradient
# steps (benchmarks/results/idp-dense-long), the dense network at 0.3 kept it on 3 of 3 seeds where BPD's cuts kept it
# on 2 (0.49) and 1 (0.3); below 0.3 on Hopper (benchmarks/results/hopper-ladder) the dense network at 0.2 and 0.15 of
# the cycles kept it on no seed, so compress tries nothing cheaper. A dense run is quick (no KL, no visits), and
# compress hands it over only where it keeps the return
DEFAULT_METHODS = ["bpd-units-finetune-pairs-warmup", "bpd-units-finetune-pairs", "bpd-units-finetune-pairs-half",
                   "bpd", "bpd-units-finetune-pairs-warmup-c50-long", "bpd-units-finetune-pairs-warmup-c50-visits",
                   "l1-threshold", "dense-c50", "dense-c30"]


EMULATED = ("m4f-cycles", "flash")  # the costs measured on an emulated Cortex-M4F (firmware_host's policy_cost)

CONFIRM = 200  # further selection episodes (the help says why; 20 until stop 79, when a student clean on 50
# episodes then fell on 2 of 30)


@dataclass
class CompressConfig:
    teacher: str = field(help="teacher file (bpd teacher format)")
    dataset: str = field(help="dataset file written by `bpd collect`, or a Minari dataset (minari:ID)")
    out: str = field("runs/compress", help="directory: a run per method, the chosen student, the comparison")
    methods: list[str] = field(DEFAULT_METHODS, help="methods to run (bpd_app/methods.py; those that train a "
                               "student from the teacher and dataset alone, and those sized to the bpd run's "
                               "Cortex-M4F cycles, with bpd: the cuts (-c50) and the dense networks dense-c50 and "
                               "dense-c30, each cut or sized to a share of them)")
    keep_return: float = field(0.99, help="fraction of the teacher's return the student must keep on the "
                               "selection seeds; a negative return (a cost): at most (1 - this) of its magnitude "
                               "below it")
    cost: str = field("m4f-cycles", choices=tuple(COSTS), help="what 'cheapest' means")
    episodes: int = field(10, help="episodes per candidate on the selection seeds")
    allow_falls: bool = field(False, help="do not set aside students that end early on a selection episode the "
                              "teacher finishes (by default they are: the student must not fall where the teacher "
                              "does not, judged on the selection seeds: per run, and over runs those with the fewest "
                              "such ends first)")
    low_share: float = field(LOW_SHARE, help="with the falls check: also a fall, a selection episode the teacher "
                             "finishes at a return below the teacher's there by more than (1 - this) of its "
                             "magnitude (a HalfCheetah flipped onto its back runs on to the end at a fraction of the "
                             "return); 0: early ends alone")
    confirm: int = field(CONFIRM, help="episodes on further selection seeds on which the methods' students that "
                         "keep the return (with the fewest falls) are judged again, cheapest first, beside the "
                         "teacher: the first that keeps it there with no early end where the teacher finishes is "
                         "handed over; none: the one with the fewest such falls there (0: hand over the cheapest at "
                         "once). A student falling on 2.3 %% of episodes ends one of 30 early more often than not; it "
                         f"passes {CONFIRM} further clean episodes with probability {0.977 ** CONFIRM:.2f} (20: "
                         f"{0.977 ** 20:.2f})")
    steps: int | None = field(None, help="gradient steps of every method's schedule, after any warm-up "
                              "(default: distill's); the dense networks take the longest earlier run's steps")
    seed: int = field(0, help="training seed of every run")


def _check(cfg: CompressConfig) -> list[str]:
    """The methods in the order they run: those another needs (the paper's BPD, against whose cycles the cuts
    are sized) before it."""
    from bpd_app.methods import CYCLE_CUTS, METHODS, get

    check_ranges(cfg, {"keep_return": (0, 1, "open"), "episodes": (1, 10_000), "confirm": (0, 10_000),
                       "low_share": (0, 1), "steps": (1, 100_000_000)})
    from training.seed_blocks import check_block, check_run_seed

    check_run_seed(cfg.seed)
    check_block(cfg.episodes, "--episodes", "the selection")
    first = selection_episodes(cfg, cfg.methods)
    check_block(cfg.confirm, "--confirm", f"the confirmation after {first} selection episodes", first)
    from training.collect import require_dataset

    if not Path(cfg.teacher).is_file():
        raise BpdError(f"{cfg.teacher}: " + ("a directory, not a teacher file (--teacher): give the teacher's .npz"
                                             if Path(cfg.teacher).is_dir() else "no such file (--teacher)"))
    require_dataset(cfg.dataset)  # a .npz, or a Minari dataset (minari:ID) as distill takes
    if not cfg.methods:
        raise BpdError("--methods: name at least one method")
    def trains(v) -> bool:  # from the teacher and dataset, or sized against the bpd run's cycles (its needs)
        return v.product == "student.pt" and v.uses_dataset and (not v.needs or v.name in CYCLE_CUTS)

    for m in cfg.methods:
        method = get(m)
        if not trains(method):
            usable = sorted(k for k, v in METHODS.items() if trains(v))
            raise BpdError(f"--methods: {m} does not train a student from the teacher and dataset alone "
                           f"(choose from {', '.join(usable)})")
        for n in method.needs:
            if n not in cfg.methods:
                raise BpdError(f"--methods: {m} is sized against the {n} run: name {n} too")
    if len(set(cfg.methods)) != len(cfg.methods):
        raise BpdError("--methods: a method is named twice")
    needed = {n for m in cfg.methods for n in get(m).needs}
    if needed or cfg.cost in EMULATED:  # told now, not after the first run has trained
        import importlib.util
        import shutil

        if shutil.which("arm-none-eabi-gcc") is None or importlib.util.find_spec("unicorn") is None:
            tools = "arm-none-eabi-gcc and the 'emulate' extra (unicorn, capstone): install them (make system-deps)"
            if cfg.cost in EMULATED:
                raise BpdError(f"--cost {cfg.cost} measures every student on an emulated Cortex-M4F, which needs "
                               f"{tools} or choose --cost smlad or nonzero")
            cuts = ", ".join(m for m in cfg.methods if get(m).needs)
            raise BpdError(f"--methods: {cuts} measure the {', '.join(sorted(needed))} run's integer kernel, which "
                           f"needs {tools} or leave those methods out")
    rest = [m for m in cfg.methods if m not in needed]
    return ([m for m in cfg.methods if m in needed] + [m for m in rest if not is_dense(m)]
            + [m for m in rest if is_dense(m)])


def is_dense(method: str) -> bool:
    """A dense network trained from nothing (dense-c50, dense-c30 and their kin): it runs after the other methods, with
    as many gradient steps as the longest of their runs took (`equal_steps`)."""
    return method.startswith("dense-")


def equal_steps(runs: list[Path]) -> int | None:
    """The most gradient steps any of these finished runs took (its summary.json's `steps`: the schedule's and the
    KL warm-up's until its gate opened), which a dense run of the same compress is given: equal budgets. On the double
    pendulum a dense network at distill's 20,000 steps was still learning where BPD's cuts, with their warm-up, had
    taken up to 38,000 (benchmarks/results/idp-dense-long). None: no such run."""
    steps = [int(read_json(r / "summary.json", "run summary")["steps"]) for r in runs if (r / "summary.json").is_file()]
    return max(steps) if steps else None


def reference(run: Path, dataset: str) -> dict:
    """What a method sized against this run needs of it (bpd_app.methods.bpd_cycles_budget): its student file
    and the estimated Cortex-M4F cycles of its DSP integer kernel, calibrated on the dataset as the runner's
    cells' exports are."""
    import tempfile

    from bpd_app.methods import collapsed_student
    from export.fixed_point import generate_int_kernel, quantise
    from firmware_host.measure.bench import kernel_cost
    from training.collect import load_dataset

    net = collapsed_student(run / "student.pt")
    q = quantise(net, load_dataset(dataset, net.obs_dim).observations, f"dataset {dataset}")
    with tempfile.TemporaryDirectory(prefix="bpd-compress-") as d:
        generate_int_kernel(net, q, Path(d), "0" * 64, "bpd compress (the reference's integer kernel)")
        c = kernel_cost(Path(d))
    if c is None:
        raise BpdError("the methods sized against another run's cycles need arm-none-eabi-gcc and the 'emulate' "
                       "extra (unicorn, capstone)")
    return {"student": str(run / "student.pt"), "bench": {"integer": {k: c[k] for k in
                                                                      ("instructions", "cycles", "flash_bytes")}}}


def run_compress(cfg: CompressConfig, meter) -> dict:
    """Train (or resume) every method's run, choose per run and over runs; meter(cost) measures a policy."""
    from bpd.process import run_bpd
    from bpd_app.methods import CellInputs, get
    from training.collect import load_dataset
    from training.minari_io import is_minari
    from training.selection import AllConstant, SelectConfig, run_select
    from training.teacher import load_teacher

    methods = _check(cfg)
    out = Path(cfg.out)
    check_output_dir(out)
    teacher = load_teacher(cfg.teacher)  # both read and matched now, not by the first run's `bpd distill`
    env = load_dataset(cfg.dataset, teacher.obs_dim, teacher.act_dim).meta["env_id"]
    dataset = cfg.dataset if is_minari(cfg.dataset) else str(Path(cfg.dataset).resolve())
    rows: list[dict] = []
    refs: dict[str, dict] = {}  # method -> what the methods sized against its run need of it
    for m in methods:
        run = out / m
        args = {} if cfg.steps is None else {"steps": cfg.steps}
        if is_dense(m):  # equal budgets; a run already begun keeps the steps it began with (its resume check)
            began = run / "config.json"
            n = (int(read_json(began, "run configuration")["steps"]) if began.is_file()
                 else equal_steps([out / r["method"] for r in rows if not is_dense(r["method"])]))
            if n:
                args["steps"] = n
        cmd = get(m).command(CellInputs(env, cfg.seed, str(Path(cfg.teacher).resolve()), dataset, run, args,
                                        {n: refs[n] for n in get(m).needs}))
        if not (run / "student.pt").is_file() or not (run / "summary.json").is_file():
            print(f"[{m}] bpd {' '.join(cmd)}", flush=True)
            code = run_bpd(cmd)
            if code != 0:
                raise BpdError(f"{m}: `bpd {' '.join(cmd)}` exited {code}; run `bpd compress` again to "
                               "resume it")
        if any(m in get(o).needs for o in methods):
            refs[m] = reference(run, cfg.dataset)
        try:
            r = run_select(SelectConfig(run=str(run), keep_return=cfg.keep_return, cost=cfg.cost,
                                        episodes=cfg.episodes, no_falls=not cfg.allow_falls,
                                        low_share=0.0 if cfg.allow_falls else cfg.low_share, out="selected.pt"),
                           meter=meter)
        except AllConstant as e:  # a method whose training pruned every path: no student of it, the others judged
            print(f"[{m}] left out: {e}", flush=True)
            continue
        ch = r["chosen"]
        if cfg.cost == "nonzero":  # select records no cost for its own count: the count is the cost compared
            ch.setdefault("cost", float(ch["params_nonzero"]))
        rows.append({"method": m, "run": str(run), "command": "bpd " + " ".join(cmd), "step": ch["step"],
                     "threshold": ch["threshold"], "params_nonzero": ch["params_nonzero"], "cost": ch.get("cost"),
                     "cost_kernel": ch.get("cost_kernel"), "cost_target": ch.get("cost_target"),
                     "select_return": ch["select_return"], "select_std": ch.get("select_std"),
                     "select_min": ch.get("select_min"), "teacher_select_return": r["teacher_select_return"],
                     "keep_return_met": r["keep_return_met"], "falls": ch.get("falls"), "student": r["out"]}
                    | ({"reference_integer": refs[m]["bench"]["integer"]} if m in refs else {})
                    | ({"dense_steps": args["steps"]} if is_dense(m) and "steps" in args else {}))
        print(run_line(m, cfg.cost, r), flush=True)
    if not rows:
        raise BpdError("no method gave a student that is not a constant (every path pruned in each): nothing handed "
                       "over")
    best, confirmed = choose_run(rows), None
    if cfg.confirm and ranked(rows):
        best, confirmed = confirm_run(cfg, env, rows)
    kept = bool(best["keep_return_met"])
    hand_over(Path(best["student"]), out)
    rule = (f"the cheapest by {COSTS[cfg.cost]} among each method's cheapest student keeping "
            f"{100 * cfg.keep_return:g} % of the teacher's return on the selection seeds"
            + ("" if cfg.allow_falls else " and, first, ending early on the fewest selection episodes the teacher "
               "finishes" + (f" (or finishing one below the teacher's return there minus {1 - cfg.low_share:.0%} of "
                             "its magnitude)" if cfg.low_share > 0 else ""))
            + ("" if kept else "; no method kept it" + ("" if cfg.allow_falls else " with the fewest falls")
               + ": the highest return is handed over"))
    if confirmed is not None:
        rule += (f"; those that keep it judged again, cheapest first, on {cfg.confirm} further selection episodes: "
                 + ("the first that keeps it there with no fall where the teacher finishes" if confirmed else
                    "none kept it there without a fall where the teacher finishes, so the one with the fewest "
                    "such falls there (then the highest return) is handed over"))
    res = {"env_id": env, "teacher": cfg.teacher, "dataset": cfg.dataset, "cost": cfg.cost,
           "keep_return": cfg.keep_return, "confirm": cfg.confirm, "rule": rule, "chosen": best["method"],
           "kept": kept, "confirmed": confirmed, "rows": rows}
    write_json(out / "compress.json", res)
    write_text(out / "compress.md", markdown(res))
    return res


def run_line(method: str, cost: str, r: dict) -> str:
    """What compress says of one method's chosen student (`student select`'s result r): its cost in the unit --cost
    names (training.selection_config.COST_UNITS) and the kernel and core it is of, its return with its spread beside
    the teacher's."""
    ch = r["chosen"]
    return (f"[{method}] step {ch['step']}: {ch['params_nonzero']} nonzero, {cost_text({'cost': 0} | ch, cost)}, "
            f"return {ch['select_return']:.1f}{spread(ch)} (teacher "
            f"{r['teacher_select_return']:.1f}; target {'kept' if r['keep_return_met'] else 'not kept'})")


def hand_over(student: Path, out: Path) -> None:
    """OUT/student.pt replaced whole by the chosen student (written atomically: a stop leaves the previous one, never
    a student cut short)."""
    data = student.read_bytes()
    atomic_write(out / "student.pt", lambda f: f.write(data))


def fewest_falls(rows: list[dict]) -> list[dict]:
    """The methods' chosen students with the fewest falls (early ends on selection episodes the teacher finishes;
    all of them where none is recorded)."""
    least = min((r["falls"] for r in rows if r.get("falls") is not None), default=None)
    return [r for r in rows if least is None or r.get("falls") == least]


def ranked(rows: list[dict]) -> list[dict]:
    """Those of `fewest_falls` that keep the return, cheapest first (ties: the higher return)."""
    kept = [r for r in fewest_falls(rows) if r["keep_return_met"]]
    return sorted(kept, key=lambda r: (r["cost"], -r["select_return"]))


def choose_run(rows: list[dict]) -> dict:
    """Over the methods' chosen students: the first of `ranked`; none keeping the return: the highest return among
    those with the fewest falls."""
    if order := ranked(rows):
        return order[0]
    return max(fewest_falls(rows), key=lambda r: r["select_return"])


def selection_episodes(cfg: CompressConfig, methods: list[str]) -> int:
    """The selection episodes before the confirmation's (confirm_run's first seed of the run seed's block): the most
    of compress's own and of the methods' runs, as a run already begun under --out records them (its config.json,
    which confirm_run reads; a finished run is not trained again, so not checked against its command), else as its
    method sets them (distill's default where it sets none)."""
    from bpd_app.methods import get

    def run_episodes(m: str) -> int:
        began = Path(cfg.out) / m / "config.json"
        if began.is_file():
            return recorded_select_episodes(began)
        return get(m).select_episodes or DISTILL_SELECT_EPISODES

    return max([cfg.episodes] + [run_episodes(m) for m in methods])


def recorded_select_episodes(config: Path) -> int:
    """The selection episodes a run's config.json records (distill's default where it records none): one line for a
    record that is not a run's configuration, where a JSON list or a text in its place was a traceback."""
    rec = read_json(config, "run configuration")
    n = rec.get("select_episodes", DISTILL_SELECT_EPISODES) if isinstance(rec, dict) else None
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise BpdError(f"{config}: not a run configuration (no whole select_episodes of at least 1); remove the run "
                       "directory to train it again")
    return n


def confirm_run(cfg: CompressConfig, env: str, rows: list[dict]) -> tuple[dict, bool]:
    """--confirm: the ranked students judged again beside the teacher on cfg.confirm selection episodes after every
    selection so far (distill's own and compress's), cheapest first; the first that holds (training.selection.confirm)
    is handed over, none: the judged one with the fewest early ends there where the teacher finishes, then the
    highest return there. Each judged row records its figures under "confirm"."""
    from functools import partial

    from bpd_app.evaluate import load_any
    from training.envs import Policy, select_eval_seed
    from training.selection import confirm
    from training.teacher import load_teacher

    def policy(path: str) -> Policy:
        return load_any(path).act

    order = ranked(rows)
    first = max([cfg.episodes] + [recorded_select_episodes(Path(r["run"]) / "config.json") for r in order])
    held, recs = confirm(env, load_teacher(cfg.teacher).act,
                         [(r["method"], partial(policy, r["student"])) for r in order],
                         select_eval_seed(cfg.seed) + first, cfg.confirm, cfg.keep_return,
                         log=lambda m: print(f"[confirm] {m}", flush=True),
                         low_share=0.0 if cfg.allow_falls else cfg.low_share)
    for r, rec in zip(order, recs):
        r["confirm"] = rec
    if held is not None:
        return order[held], True
    return least_falling(order[:len(recs)]), False


def least_falling(judged: list[dict]) -> dict:
    """Of students judged again (each with its "confirm" record), none of which held: the one with the fewest falls
    there (early ends where the teacher finishes, and low episodes), then the highest return there. What compress
    hands over then; benchmarks/delivered.py follows the same rule."""
    return min(judged, key=lambda r: (confirm_falls(r["confirm"]), -r["confirm"]["return"]))


def confirm_falls(c: dict) -> int:
    """A confirm record's falls: early ends where the teacher finishes, and low episodes."""
    return int(c["early_ends_where_teacher_finished"]) + int(c.get("low_episodes", 0))


def caution(res: dict) -> str | None:
    """A line for the user where no candidate held on the further episodes: how often the student handed over fell
    there (its early ends where the teacher finishes and its low episodes) and what that means on 30 episodes, and
    its return there where that fell short of the share kept; and where no method's student kept the share on the
    selection seeds at all (nothing judged again), that, with the return of the one handed over."""
    if res.get("kept") is False:
        r = next((r for r in res["rows"] if r["method"] == res["chosen"]), None)
        if r is not None:
            fell = f", {r['falls']} falls there" if r.get("falls") else ""
            # kept by a method that fell more often (the falls come first): not handed over, and named
            others = [x["method"] for x in res["rows"] if x.get("keep_return_met")]
            who = "no method's student with the fewest falls" if others else "no method's student"
            more = f" ({', '.join(others)} kept it, falling more often)" if others else ""
            return (f"caution: {who} kept {100 * float(res['keep_return']):g} % of the teacher's return "
                    f"on the selection seeds{more}; {res['chosen']}, handed over, returned {r['select_return']:.1f} "
                    f"there against the teacher's {r['teacher_select_return']:.1f} "
                    f"({percent(r['select_return'], r['teacher_select_return'])}){fell}. Judge it on your plant "
                    "before relying on it, or train longer or with more data.")
    if res.get("confirmed") is not False:
        return None
    c = next((r["confirm"] for r in res["rows"] if r["method"] == res["chosen"] and r.get("confirm")), None)
    if not c:
        return None
    falls = confirm_falls(c)
    rate = falls / c["episodes"]
    keep = float(res["keep_return"])
    why = []
    if falls:
        why.append(f"fell on {falls} of them ({100 * rate:.1f} %): at that rate 30 episodes pass without a fall with "
                   f"probability {(1 - rate) ** 30:.2f}")
    if c["return"] < return_floor(c["teacher_return"], keep):  # training.selection.confirm's test
        why.append(f"returned {c['return']:.1f} there against the teacher's {c['teacher_return']:.1f}, below the "
                   f"{100 * keep:g} % asked")
    if not why:
        return None
    return (f"caution: no candidate held on the {c['episodes']} further selection episodes; {res['chosen']}, handed "
            f"over, {' and '.join(why)}. Judge it on your plant before relying on it.")


def markdown(res: dict) -> str:
    """compress.md: one row per method's chosen student; a kernel column (what each cost is of, `cost_of`) where a
    row records one (the emulated costs and the SMLAD count, not the nonzero count)."""
    kernels = any(r.get("cost_kernel") for r in res["rows"])
    L = [f"# bpd compress: {res['env_id']}", "", f"Handed over: **{res['chosen']}** ({res['rule']}).", "",
         f"| method | step | nonzero | {res['cost']}: {COST_UNITS[res['cost']]} " + ("| kernel " if kernels else "")
         + "| return (selection seeds: mean +- std, worst) | % of teacher "
         f"| keeps {100 * res['keep_return']:g} % | falls | judged again |", "|---" * (9 + kernels) + "|"]
    for r in res["rows"]:
        t = r["teacher_select_return"]
        falls = "-" if r.get("falls") is None else r["falls"]
        c = r.get("confirm")
        again = "-" if not c else (f"{percent(c['return'], c['teacher_return'])} of the teacher, "
                                   f"{c['early_ends_where_teacher_finished']} falls on {c['episodes']}: "
                                   + ("holds" if c["holds"] else "does not hold"))
        L.append(f"| {r['method']} | {r['step']} | {r['params_nonzero']} | {r['cost']:.0f} | "
                 + (f"{cost_of(r) or '-'} | " if kernels else "")
                 + f"{r['select_return']:.1f}{spread(r)} "
                 f"| {percent(r['select_return'], t)} | {'yes' if r['keep_return_met'] else 'no'} | {falls} "
                 f"| {again} |")
    return "\n".join(L) + "\n"


def percent(ret: float, teacher_return: float) -> str:
    """A return as a percentage of the teacher's, on the scale the keep-return rule reads (a negative return:
    training.envs.share_of_teacher, -90 against -100 is 110.0 %)."""
    share = share_of_teacher(ret, teacher_return)
    return "-" if share is None else f"{100 * share:.1f} %"
