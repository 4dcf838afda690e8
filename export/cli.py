"""Subcommands of the export room."""


def _export(ns):
    from bpd.config import from_namespace
    from export.export import ExportConfig, format_report, run_export

    cfg = from_namespace(ExportConfig, ns)
    print(format_report(run_export(cfg)))
    print(f"export written to {cfg.out}/")


COMMANDS = {"export": ("export.export:ExportConfig", _export,
                       "collapse a student to ONNX + C with parity against torch")}
