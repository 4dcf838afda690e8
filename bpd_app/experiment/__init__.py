"""`bpd experiment`: grids of runs (environments x methods x seeds x overrides) and their tables.

A plan is a YAML file (see benchmarks/plans/ and the format in plan.py). Every cell is an ordinary
run directory under the plan's run root, trained by the `bpd` command its method builds
(bpd_app/methods.py) and then evaluated, exported and measured by `bpd evaluate`, `bpd export` and
`bpd bench`. The runner only schedules: a cell whose result.json exists is skipped, an interrupted
one resumes (each stage skips what it finished; distillation and teacher training resume from their
checkpoints), a failed one records its error in cell.json and the others go on. A stopped runner (Ctrl-C,
SIGTERM, SIGHUP) stops its stages and records their cells as interrupted, not failed (on the local engine; Ray's
tasks do not see the stop and record them failed, which the next run retries too); a killed one takes its
stages with it on Linux (cells.stage_command), so that no stage writes into a cell the next run resumes.
Cells run in local worker threads, each driving `bpd` subprocesses, or as Ray tasks on a cluster
(`--engine ray`; the run root must then be a path every node sees).

The run root is disposable; the committed results are not. `experiment table` commits every finished
cell's summary (result.json: the figures, the specification it ran under and its digest, its
evaluation curve) under the plan's results directory. A cell whose run directory is missing but
whose committed summary was made under the plan's current specification counts as done: `experiment
run` restores it into the run root (cells that need it read it there) and does not train it again,
and `experiment table` and `status` read it. Only what the summary holds survives a lost run root:
checkpoints, logs and datasets do not.

A cell sized from another (a baseline or ablation from BPD's cell) records that cell's digest
(needs_digests) and the hash of its student (needs_products). When the cell it needs is later run
under another specification, or trained again into another student, its own result no longer answers
the plan: it is neither restored, nor counted as done, nor tabulated, and the table names it among the
failed cells. A table never writes a summary made under another specification over a committed one.
A method that reads the needed cell's products (its export, student or run: the cycle cuts, the
reselection), not only its summary, fails on a needed cell that was restored, naming the `--retrain --only`
that trains it again (then first, before the cells that need it): a new student would replace the committed one.

The modules, each importing only those before it:
    plan      the plan file, its checks, each cell's specification and digest
    summary   a finished cell's result.json and the figures it is made from
    cells     executing one cell (and preparing an environment) with `bpd` subprocesses
    results   committed summaries, restoring them, every cell's state and summary
    sessions  the runner's invocations (sessions.json) and their wall time
    engines   local threads or Ray tasks
    runner    run_plan: scheduling the cells, dependencies first
    status    `experiment status`: states and time left
    stats     aggregates over seeds (IQM, bootstrap interval, the bar)
    plots     the PNGs beside the tables
    tables    markdown and CSV tables, the committed cell summaries
    commands  the three commands' configs and handlers

The names below are the ones scripts outside the package use.
"""

from bpd_app.experiment.plan import Plan, load_plan
from bpd_app.experiment.results import collect_results
from bpd_app.experiment.stats import BAR, aggregate, kernel_kind
from bpd_app.experiment.summary import early_where_teacher_finished
from bpd_app.experiment.tables import kernels_note, write_table

__all__ = ["BAR", "Plan", "aggregate", "collect_results", "early_where_teacher_finished", "kernel_kind",
           "kernels_note", "load_plan", "write_table"]
