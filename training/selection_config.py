"""The options of `bpd student select` and `bpd student sweep`, and what a selection's cost counts: read by the
command line without torch (training/selection.py runs them)."""

from __future__ import annotations

from dataclasses import dataclass

from bpd.config import field

# what a chosen student's `cost` figure counts, as `bpd student select` prints it
COST_UNITS = {"nonzero": "nonzero parameters", "m4f-cycles": "est. Cortex-M4F cycles (select's meter, before export)",
              "flash": "B est. Cortex-M4F policy flash (select's meter, before export)",
              "smlad": "DSP multiply-adds (SMLADs)"}
# the kernel a counted cost is of (the emulated costs' meter names its own per student: `cost_fields`)
COST_KERNELS = {"smlad": "integer"}
COSTS = {"nonzero": "the fewest nonzero parameters",
         "m4f-cycles": "the fewest estimated Cortex-M4F cycles (the cheaper of the compact kernel with a table "
                       "tanh and the integer kernel, emulated)",
         "flash": "the least Cortex-M4F policy flash (of the kernel fewest cycles picks)",
         "smlad": "the fewest multiply-adds of the DSP integer kernel (an SMLAD a row and pair of columns: "
                  "training/pairs.py)"}


Cost = float | dict  # a cost function's answer: the figure, or the meter's record of it ("cost", "kernel", "target")


def cost_fields(answer: Cost, cost: str) -> dict:
    """A row's record of a cost function's answer: "cost", and where known the kernel it is of ("cost_kernel", the
    name `bpd export` records: integer, compact-table) and the core it was measured on ("cost_target")."""
    if not isinstance(answer, dict):
        return {"cost": float(answer)} | ({"cost_kernel": COST_KERNELS[cost]} if cost in COST_KERNELS else {})
    return {"cost": float(answer["cost"]), "cost_kernel": answer["kernel"]} | (
        {"cost_target": answer["target"]} if answer.get("target") else {})


def cost_of(row: dict) -> str:
    """The kernel and core a row's cost is of: 'integer on cortex-m4f', 'integer'; '' where unknown."""
    kernel = row.get("cost_kernel") or ""
    return f"{kernel} on {row['cost_target']}" if kernel and row.get("cost_target") else kernel


def cost_text(row: dict, cost: str) -> str:
    """A row's cost as a line says it, the kernel in the unit: '3762 est. Cortex-M4F cycles of the integer kernel on
    cortex-m4f (select's meter, before export)', '355 DSP multiply-adds of the integer kernel (SMLADs)'."""
    head, paren, tail = COST_UNITS.get(cost, "").partition(" (")
    kernel, target = row.get("cost_kernel"), row.get("cost_target")
    of = (f" of the {kernel} kernel" + (f" on {target}" if target else "")) if kernel else ""
    return f"{row['cost']:.0f} {head}{of}{paren}{tail}".rstrip()


def spread(row: dict) -> str:
    """A chosen row's spread on the selection seeds beside its mean return (std, worst episode), where recorded."""
    if row.get("select_min") is None:
        return ""
    std = f" +- {row['select_std']:.1f}" if row.get("select_std") is not None else ""
    return f"{std}, worst {row['select_min']:.1f}"


@dataclass
class SweepConfig:
    run: str = field(help="distillation run directory (or a student .pt)", positional=True)
    thresholds: list[float] = field([-2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
                                    help="log alpha thresholds to collapse the student at")
    episodes: int = field(10, help="episodes per threshold")
    seed: int = field(0, help="seed of the first episode (reporting seeds: below 100000)")
    env: str | None = field(None, help="environment id (default: the student's)")
    out: str | None = field(None, help="write the sweep as JSON here, with a PNG beside it")


@dataclass
class SelectConfig:
    run: str = field(help="distillation run directory (with candidates.pt)", positional=True)
    rule: str = field("keep-return", choices=("keep-return", "sparsest-within"),
                      help="keep-return: the sparsest that keeps --keep-return of the teacher's return; "
                           "sparsest-within: the sparsest within --tol of the best candidate (every candidate "
                           "judged, not only those whose periodic return was near the best)")
    keep_return: float = field(0.95, help="fraction of the teacher's return to keep, on the selection seeds"
                               "; a negative return (a cost): at most (1 - this) of its magnitude below it")
    cost: str | None = field(None, choices=tuple(COSTS), help="what 'smallest' means: nonzero parameters, the DSP "
                             "integer kernel's multiply-adds (smlad), or what the student costs on a Cortex-M4F "
                             "(estimated cycles or policy flash, measured per candidate); default: the run's own "
                             "(smlad where it filled the pair partners, as distill does by default, else nonzero)")
    tol: float = field(0.02, help="with --rule sparsest-within: the tolerance below the best selection return")
    thresholds: list[float] | None = field(None, help="log alpha thresholds to try, in place of the run's "
                                                 "(default: the run's)")
    episodes: int = field(10, help="episodes per candidate on the selection seeds")
    env: str | None = field(None, help="environment the candidates and the teacher are judged in (default: the "
                            "student's), e.g. a rig's nominal plant where the run evaluated on its randomised one")
    no_falls: bool = field(False, help="set aside candidates that end early on a selection episode the teacher "
                           "finishes (the teacher run on the same seeds; where every candidate does, those with the "
                           "fewest such ends)")
    low_share: float = field(0.0, help="with --no-falls: also a fall, an episode the teacher finishes whose return "
                             "falls short of the teacher's on that seed by more than (1 - this) of its magnitude (a "
                             "task without termination, e.g. a HalfCheetah flipped onto its back); 0: early ends alone")
    out: str = field("selected.pt", help="student file to write (relative paths: inside the run directory; a "
                     "directory: selected.pt in it); written outside the run, it records the run, whose data and "
                     "teacher `bpd export` then reads")
    summary: str | None = field(None, help="also write the run's summary.json with this selection in its place "
                                "(and its seconds added), for a run directory of its own around --out")
