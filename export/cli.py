"""Subcommands of the export room. `bpd export` itself is wired by the firmware room (firmware_host/cli.py),
which lends it the emulated Cortex-M meter that chooses the kernel."""

from bpd.config import from_namespace


def _multitask_export(ns):
    from export.multitask import MultiTaskExportConfig, run_multitask_export
    cfg = from_namespace(MultiTaskExportConfig, ns)
    r = run_multitask_export(cfg)
    for t in r["tasks"].values():
        print(f"{t['entry_point']}: {t['env_id']}, C vs float64 max error {t['max_abs_error']:.2e} "
              f"on {t['samples']} states")
    print(f"export written to {cfg.out}/ ({r['weights_flash_bytes']} bytes of weights, {r['params_nonzero']} nonzero)")


COMMANDS = {
    "multitask export": ("export.multitask:MultiTaskExportConfig", _multitask_export,
                         "a multi-task student to C, one entry point per task, parity checked"),
}
