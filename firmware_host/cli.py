"""Subcommands of the firmware room."""

import sys


def _build(ns):
    from bpd.config import from_namespace
    from firmware_host.measure.build import FirmwareBuildConfig, firmware_build

    r = firmware_build(from_namespace(FirmwareBuildConfig, ns))
    parts = ", ".join(f"{k} {v['flash_bytes']}/{v['ram_bytes']}" for k, v in r["parts"].items())
    if r["target"] == "host":  # a shared library for this computer: no part's flash or RAM to speak of
        what = ("a program for this computer (the policy and the bench's entry point)" if r.get("image") == "bench"
                else "a shared library for this computer (the simulated rig's device, the tests)")
        print(f"host: text {r['sections']['text']} B, data + bss {r['ram_bytes']} B of {what}; a part's flash and "
              "RAM: --target cortex-m4f")
        print(r["elf"])
        return
    print(f"{r['target']}: flash {r['flash_bytes']} B (text {r['sections']['text']} + data {r['sections']['data']}), "
          f"RAM {r['ram_bytes']} B (data + bss" + (f"; {r['ram_with_stack_bytes']} B with the worst-case stack"
                                                   if r.get("ram_with_stack_bytes") else "")
          + f"); flash/RAM B by part: {parts}")
    st = r.get("stack")
    if st and "note" in st:
        print(st["note"])
    elif st:
        main = st.get("main") or {}
        total = st.get("total_bytes")
        chain = main.get("chain", [])  # its first six calls; the whole path is in build_report.json
        path = " > ".join(chain[:6]) + (f" > ... ({len(chain)} functions, all in build_report.json)"
                                        if len(chain) > 6 else "")
        print("stack, whole image from its call graph: " + (
            f"{total} B worst case (main path {main.get('bytes')} B through {path}, "
            f"interrupt {st['interrupt']['bytes']} B + exception frame {st['interrupt']['exception_frame']} B)"
            if total is not None else f"unbounded ({' > '.join(main.get('chain', []))})"))
    print(r["elf"])


def _export(ns):
    from bpd.config import from_namespace
    from export.export import ExportConfig, run_export
    from export.report import format_report
    from firmware_host.measure.bench import kernel_cost

    cfg = from_namespace(ExportConfig, ns)
    if cfg.teacher:
        _check_teacher_of_source(cfg.teacher, cfg.source)
    r = run_export(cfg, meter=kernel_cost)
    print(format_report(r))
    print(f"export written to {cfg.out}/")
    if note := over_budget_note(r, cfg.flash_budget):
        print(note, file=sys.stderr)
    if cfg.package in ("arduino", "platformio", "all") and not cfg.package_url:
        from export.package import PLACEHOLDER_URL, renamed
        print(f"note: the library's web page is the placeholder {renamed(PLACEHOLDER_URL, cfg.package_name)} "
              "(library.json, library.properties): give --package-url before you publish it")


def over_budget_note(report: dict, budget: int) -> str | None:
    """The note for an export whose shipped kernel is over --flash-budget (no kernel of the student fit: the rule
    shipped the least flash, or the integer-table kernel, forced and fitted to it, could not be made that small), or
    None. Another kernel forced by --kernel was not held to the budget (auto's alone is)."""
    k = report.get("kernel") or {}
    if k.get("requested", "auto") not in ("auto", "integer-table"):
        return None
    shipped = ((k.get("candidates") or {}).get(k.get("variant", k.get("kind"))) or {}).get("cost") or {}
    if (shipped.get("flash_bytes") or 0) <= budget:
        return None
    return (f"bpd: note: the shipped kernel's policy flash, {shipped['flash_bytes']} B, is over --flash-budget "
            f"({budget} B): " + ("no kernel of this student fits the part that budget describes" if k.get(
                "requested", "auto") == "auto" else "the least flash --kernel integer-table makes for this student")
            + "; a smaller student: bpd distill --prune-to-cycles, or bpd student select --cost flash")


def _check_teacher_of_source(teacher: str, source: str) -> None:
    """export --teacher names the dense network the student is compared with: one of the same task."""
    from bpd.errors import BpdError
    from export.export import load_source
    from training.teacher import load_teacher

    t = load_teacher(teacher)
    src = load_source(source)
    obs, act = src.policy.obs_dim, src.policy.act_dim
    if (t.obs_dim, t.act_dim) != (obs, act) or (src.env_id and t.env_id != src.env_id):
        raise BpdError(f"{teacher}: the teacher maps {t.obs_dim} observations to {t.act_dim} actions in "
                       f"{t.env_id}, the exported policy {obs} to {act} in {src.env_id}; give the teacher of "
                       "this task")


def _student_select(ns):
    from bpd.config import from_namespace
    from firmware_host.measure.bench import policy_cost
    from training.cli import report_select
    from training.selection import SelectConfig, run_select

    report_select(run_select(from_namespace(SelectConfig, ns), meter=policy_cost))


def _distill(ns):
    from firmware_host.measure.dsp_meter import mask_cycles
    from training.cli import distill_command

    distill_command(ns, meter=mask_cycles)


def _bench(ns):
    from bpd.config import from_namespace
    from firmware_host.measure.bench import BenchConfig, run_bench

    cfg = from_namespace(BenchConfig, ns)
    r: dict = {}
    _new_dir_removed_on_failure(cfg.out, lambda: r.update(run_bench(cfg)))
    print(r["markdown"])


COMMANDS: dict[str, tuple] = {  # subcommand -> (config class, handler, help, *argument tweaks)
    "distill": ("training.distill_config:DistillConfig", _distill, "distill a sparse Bayesian student (BPD)"),
    "student select": ("training.selection_config:SelectConfig", _student_select,
                       "choose again among a run's evaluated students: the smallest (nonzero parameters, or "
                       "Cortex-M4F cycles or flash) that keeps a share of the teacher's return, or the smallest "
                       "near the best, every candidate judged"),
    "export": ("export.export_config:ExportConfig", _export, "collapse a student to ONNX + C with parity against "
               "torch; the C kernel chosen by its measured Cortex-M4F cost"),
    "firmware build": ("firmware_host.measure.build:FirmwareBuildConfig", _build,
                       "build an image with an exported policy for a Cortex-M target or the host"),
    "bench": ("firmware_host.measure.bench:BenchConfig", _bench,
              "measure inference cost: host runtimes, emulated Cortex-M, dense peers"),
}


def _new_dir_removed_on_failure(d: str | None, run) -> None:
    """run(); a directory d it created is removed again when it fails (a kept build is only a cache)."""
    import shutil
    from pathlib import Path

    created = d is not None and not Path(d).exists()
    try:
        run()
    except BaseException:
        if created and d is not None:
            shutil.rmtree(d, ignore_errors=True)
        raise


def _rig_sim(ns):
    from bpd.config import check_ranges, from_namespace
    from firmware_host.rig.sim import RigSimConfig, rig_sim

    cfg = from_namespace(RigSimConfig, ns)
    check_ranges(cfg, {"action_timeout": (0, 3600, "open")})
    _new_dir_removed_on_failure(cfg.build_dir, lambda: rig_sim(cfg))


def _flash(ns):
    from bpd.config import from_namespace
    from firmware_host.measure.flash import FirmwareFlashConfig, firmware_flash

    print(firmware_flash(from_namespace(FirmwareFlashConfig, ns)))


COMMANDS["firmware flash"] = ("firmware_host.measure.flash:FirmwareFlashConfig", _flash,
                              "write a board build to the board through pyOCD (the 'flash' extra) and reset it")

def _view_flag(p):
    from bpd.view import view_flag  # imported only when `bpd rig sim` is parsed

    view_flag(p)


COMMANDS["rig sim"] = ("firmware_host.rig.sim:RigSimConfig", _rig_sim,
                       "start a simulated rig (MuJoCo plant + firmware core) on a pseudo-terminal", _view_flag)


def _rig_pil(ns):
    from bpd.config import check_ranges, from_namespace
    from bpd.io import check_output_path
    from firmware_host.measure.pil import RigPilConfig, rig_pil

    cfg = from_namespace(RigPilConfig, ns)
    check_ranges(cfg, {"action_timeout": (0, 3600, "open"), "duration": (0, None), "restart_at": (0, None),
                       "seed": (0, 2**31 - 1)})  # as `bpd rig sim`'s
    if cfg.log:
        check_output_path(cfg.log)  # before QEMU starts
    _new_dir_removed_on_failure(cfg.build_dir, lambda: rig_pil(cfg))


COMMANDS["rig pil"] = ("firmware_host.measure.pil:RigPilConfig", _rig_pil,
                       "run the firmware image in QEMU (STM32F405) with the MuJoCo plant on its second UART; "
                       "prints the host UART's pty path")


def _classical_export(ns):
    from bpd.config import from_namespace
    from firmware_host.rig.classical import HANDOVER_PREFIX, ClassicalExportConfig, export_classical

    cfg = from_namespace(ClassicalExportConfig, ns)
    info = export_classical(cfg.rig, cfg.out, HANDOVER_PREFIX if cfg.handover else "bpd")
    k = ", ".join(f"{g:.4g}" for g in info["design"]["gains"])
    c, t = info["nominal_check"], info["nominal_check"]["time_to_upright_median_s"]
    print(f"classical controller for {info['rig']}: energy swing-up + LQR K = [{k}]; on its nominal plant "
          f"{c['successes']} of {c['episodes']} episodes {c['rule']}" + (f" (median {t:.2f} s to upright)" if t else "")
          + f" -> {cfg.out}")


COMMANDS["classical export"] = ("firmware_host.rig.classical:ClassicalExportConfig", _classical_export,
                                "write the energy swing-up + LQR controller of a rotary pendulum rig as an "
                                "export directory (runs on the device like a policy), once the design has swung up "
                                "the rig's simulated plant")
