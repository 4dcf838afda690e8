"""What every method of the experiment runner is made of: a cell's inputs, a method, the registry methods add
themselves to, the flags of their commands, and the widths of a BPD cell's student (bpd_app.methods registers the
project's methods, bpd_app.baseline_methods the distillation baselines; `bpd_app.methods.get` finds any of them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bpd.errors import BpdError


@dataclass
class CellInputs:
    """What a method needs to build its command."""

    env: str
    seed: int
    teacher: str
    dataset: str
    out: Path
    args: dict
    deps: dict[str, dict] = field(default_factory=dict)  # label of a needed cell -> its result.json
    teacher_meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Method:
    name: str
    help: str
    command: Callable[[CellInputs], list[str]]
    product: str = "student.pt"          # file in the run directory that is evaluated and exported
    needs: tuple[str, ...] = ()          # methods whose cell (same env and seed) must finish first
    uses_dataset: bool = True
    # raised when the method's training changes what it produces from the same specification, so that cells
    # finished by the earlier version are not reused (they are reported as run with another specification)
    revision: int = 1
    # where a change touches some of a method's cells alone: the revision of a cell from its args (in place of
    # revision), so that the others keep their digests
    revision_of: Callable[[dict], int] | None = None
    # options of the plan's env_args this method does not take (they mean something else to it)
    skips_env_args: tuple[str, ...] = ()
    # selection episodes its runs judge their candidates on, where the method sets them (None: distill's default or
    # the plan's args): what the delivered student's rule needs to read a cell's selection against the teacher's
    select_episodes: int | None = None
    # its cell stands for the needed cell's run (a selection again over that run's candidates): where both have
    # finished, the delivered student's rule reads this one's choice, not the needed cell's
    supersedes: bool = False
    # reads the needed bpd cell whatever its label: a plan may name a BPD variant's row for it (needs: {bpd: LABEL})
    sized_by_any_bpd: bool = False
    # reads products of the needed cell's run directory (its export, student or run), not only its summary: a needed
    # cell restored from its committed summary keeps none, so the runner trains it again first
    reads_needed_products: bool = False
    # sized from the needed cell's export or its measured cycles, which a plan with bench: false does not make (the
    # plan is refused when it is read, not each of its cells when it runs)
    needs_bench: bool = False
    # its run writes summary.json after its product (distill, baseline train, student select): a product without the
    # summary is a run stopped between the two, which the runner resumes rather than takes as trained
    writes_summary: bool = True


METHODS: dict[str, Method] = {}


def register(m: Method) -> Method:
    if m.name in METHODS:
        raise ValueError(f"method {m.name!r} registered twice")
    METHODS[m.name] = m
    return m


def flags(args: dict, config: type) -> list[str]:
    """{'eta_schedule': 'constant', 'hidden': [32, 32], 'progress': False} -> command-line flags of the
    command whose configuration class is config. A switch is written only where it departs from its
    default, in its one spelling (bpd.config.switch_flag)."""
    import dataclasses

    from bpd.config import switch_flag

    defaults = {f.name: f.default for f in dataclasses.fields(config)}
    out: list[str] = []
    for k, v in args.items():
        flag = "--" + str(k).replace("_", "-")
        if isinstance(v, bool):
            on_by_default = bool(defaults.get(str(k), False))
            if v != on_by_default:
                out.append(switch_flag(str(k), on_by_default))
        elif isinstance(v, (list, tuple)):
            out += [flag, *(str(x) for x in v)]
        elif v is None:
            continue
        else:
            out += [flag, str(v)]
    return out


def resume_flag(out: Path) -> list[str]:
    return ["--resume"] if (out / "config.json").exists() else []


def needed_label(c: CellInputs, given: object = None) -> str:
    """The plan label of the cell a sized method reads: the one cell it waits for (the plan's `needs: {bpd: LABEL}`
    names it, by default the `bpd` row), or `size_from` where the method's args give it, which must be that cell
    (the runner hands a method the results of its needed cells alone, keyed by their labels)."""
    if given is None:
        return next(iter(c.deps)) if len(c.deps) == 1 else "bpd"
    if c.deps and str(given) not in c.deps:
        raise BpdError(f"size_from {given!r} is not {' or '.join(map(repr, c.deps))}, the cell its needs: names")
    return str(given)


def sibling_cell(c: CellInputs, label: str) -> Path:
    """The run root's directory of the `label` cell of the same environment and seed as this one."""
    return c.out.parent.parent.parent / label / f"seed{c.seed}"


def bpd_collapsed_widths(c: CellInputs, label: str) -> list[int]:
    """Hidden widths of the `label` cell's student (same environment and seed) after collapse: from its
    export, else by collapsing its student file (the cell beside this one in the run root)."""
    dep = c.deps.get(label) or {}
    widths = (dep.get("export") or {}).get("widths")
    if widths:
        return list(widths[1:-1])
    student = sibling_cell(c, label) / "run" / "student.pt"
    if not student.is_file():
        raise BpdError(f"the {label} cell of {c.env} seed {c.seed} has no export and its student file is gone "
                       f"(a run root that was lost): rerun that cell with bench on")
    return list(collapsed_student(student).widths[1:-1])


def collapsed_student(student: Path):
    """A student file's collapsed network (export.collapse.CollapsedNet: what its export's ONNX holds)."""
    from export.collapse import collapse
    from training.student import load_student
    s, _, stats = load_student(student)
    return collapse(s.collapse(**stats))
