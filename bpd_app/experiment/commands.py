"""The three `bpd experiment` commands (run, table, status): their configs and handlers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bpd.config import field
from bpd.errors import BpdError
from bpd.io import check_output_dir
from bpd_app.experiment.cells import BUSY
from bpd_app.experiment.plan import check_plan_envs, check_plan_teachers, load_plan
from bpd_app.experiment.runner import check_run_root, run_plan, select_cells
from bpd_app.experiment.status import plan_status
from bpd_app.experiment.tables import write_table


@dataclass
class ExperimentRunConfig:
    plan: str = field(help="plan file (YAML)", positional=True)
    workers: int = field(1, help="cells at once (local threads or Ray tasks)")
    engine: str = field("local", help="where cells run", choices=("local", "ray"))
    address: str | None = field(None, help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    runs: str | None = field(None, help="run root (default: $BPD_RUNS/<plan name>, else ../bpd-runs/<name>)")
    only: list[str] | None = field(None, help="run only cells whose key (ENV/LABEL/seedN) starts with one of these")
    retrain: bool = field(False, help="train again the cells the run root lacks, or holds only as restored "
                                      "summaries, even where a committed summary exists (to recreate their "
                                      "checkpoints); `experiment table` then commits the new summaries")
    rebench: bool = field(False, help="train nothing: export and bench again the finished cells whose integer "
                                      "kernel is of an earlier form (after a change to the kernels), one at a "
                                      "time, so that the tables' cost columns are the current kernels'")


@dataclass
class ExperimentTableConfig:
    plan: str = field(help="plan file (YAML)", positional=True)
    out: str | None = field(None, help="output directory (default: benchmarks/results/<plan name>)")
    runs: str | None = field(None, help="run root (default: as for `experiment run`)")


@dataclass
class ExperimentStatusConfig:
    plan: str = field(help="plan file (YAML)", positional=True)
    runs: str | None = field(None, help="run root (default: as for `experiment run`)")


def cmd_run(cfg: ExperimentRunConfig) -> int:
    if not 1 <= cfg.workers <= 1024:
        raise BpdError("--workers must be between 1 and 1024")
    plan = load_plan(cfg.plan, cfg.runs)
    check_plan_envs(plan)
    check_plan_teachers(plan)
    selected = select_cells(plan, cfg.only)
    if cfg.rebench:
        return rebench_plan(plan, cfg.only)
    check_run_root(plan)  # before the line that names it
    if cfg.engine == "ray":  # and the engine it names
        from bpd_app.experiment.engines import ray_module

        ray_module()
    of = f" of {len(plan.cells())}" if len(selected) < len(plan.cells()) else ""
    print(f"plan {plan.name}: {len(selected)}{of} cells{' (--only)' if of else ''} in {plan.runs} "
          f"({cfg.engine}, {cfg.workers} worker{'s' if cfg.workers > 1 else ''})", flush=True)
    recs = run_plan(plan, cfg.workers, cfg.engine, cfg.address, cfg.only, echo=lambda s: print(s, flush=True),
                    retrain=cfg.retrain)
    busy = [k for k, r in recs.items() if r.get("state") == BUSY]
    stopped = [k for k, r in recs.items() if r.get("state") in ("interrupted", "pending")]  # a Ray task stopped
    failed = [k for k, r in recs.items() if r.get("state") not in ("done", BUSY, "interrupted", "pending")]
    print(f"{len(recs) - len(failed) - len(busy) - len(stopped)} done, {len(failed)} failed"
          + (f", {len(stopped)} interrupted or left (the same `bpd experiment run` resumes them)" if stopped else "")
          + (f", {len(busy)} left to another runner of this run root" if busy else ""))
    return 1 if failed or stopped else 0


def rebench_plan(plan, only: list[str] | None) -> int:
    """`experiment run --rebench`: every selected cell's export and bench made again where its integer kernel
    is of an earlier form (cells.rebench_cell); a cell that fails keeps its old figures."""
    from bpd_app.experiment.cells import StageFailed, rebench_cell

    if not plan.bench:
        raise BpdError(f"plan {plan.name} does not bench its cells (bench: false): nothing to measure again")
    check_run_root(plan)
    cells = select_cells(plan, only)
    failed = 0
    for i, c in enumerate(cells, 1):
        try:
            what = rebench_cell(plan, c)
        except (StageFailed, OSError) as e:
            what, failed = f"FAILED (its old figures kept): {e}", failed + 1
        print(f"[{i}/{len(cells)}] {c.key}: {what}", flush=True)
    return 1 if failed else 0


def cmd_table(cfg: ExperimentTableConfig) -> dict:
    plan = load_plan(cfg.plan, cfg.runs)
    check_plan_envs(plan)
    out = Path(cfg.out) if cfg.out else plan.results_dir
    check_output_dir(out)
    return write_table(plan, out)


def cmd_status(cfg: ExperimentStatusConfig) -> list[dict]:
    plan = load_plan(cfg.plan, cfg.runs)
    check_plan_envs(plan)
    return plan_status(plan)
