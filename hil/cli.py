"""Subcommands of the HIL room."""



def _run(ns):
    from bpd.config import from_namespace
    from hil.trial import HilRunConfig, run_trial

    s = run_trial(from_namespace(HilRunConfig, ns))
    t = s["timing"]
    for e in s["episodes"]:
        print(f"episode {e['episode']}: return {e['return']:.0f}, {e['length']} ticks, {e['ended']}")
    if t.get("ticks"):
        step = f"{t['host_step_us']['p99']:.0f} us" if t["host_step_us"]["n"] else "- (device mode)"
        infer = f"{t['infer_ns']['median']:.0f} ns" if t["infer_ns"]["n"] else "-"
        cycles = f" ({t['policy_cycles']['median']:.0f} cycles)" if t["policy_cycles"]["n"] else ""
        jitter = f"{t['device_jitter_us']['max']:.0f} us" if t["device_jitter_us"]["n"] else "-"
        print(f"rate {t['achieved_rate_hz']:.1f} Hz (target {t['target_rate_hz']:.1f}); host step p99 {step}; "
              f"on-device inference median {infer}{cycles}; device tick jitter max {jitter}; deadline misses "
              f"{t['deadline_misses']} ({100 * t['deadline_miss_rate']:.2f} %); logs in {ns.out}")


def _report(ns):
    from hil.report import render, write_html

    for p in render(ns.log_dir):
        print(p)
    if ns.html:
        print(write_html(ns.log_dir))


def _view_flag(p):
    from bpd.view import view_flag  # imported only when `bpd hil run` is parsed

    view_flag(p)



def _check(ns):
    from bpd.config import from_namespace
    from hil.commission import RigCheckConfig, format_table, run_check

    cfg = from_namespace(RigCheckConfig, ns)
    r = run_check(cfg)
    print(format_table(r))
    print(f"saved: {cfg.record}/{r['rig']}.json")
    if not r["passed"]:
        from bpd.errors import BpdError
        raise BpdError(f"rig {r['rig']} failed its check: {', '.join(r['failed'])} (fixes above)")


COMMANDS = {
    "hil run": ("hil.trial:HilRunConfig", _run, "run trials on a rig over a serial port", _view_flag),
    "hil report": ("hil.report:ReportConfig", _report, "render a trial's plots again from its logs"),
    "rig check": ("hil.commission:RigCheckConfig", _check,
                  "commission a rig (policy off, motor limited): sensors at rest, encoder direction and scale, "
                  "motor polarity, end stops, loop timing, link quality; a table of pass/fail with each fix"),
}
