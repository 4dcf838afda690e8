"""Subcommands of the HIL room."""

from pathlib import Path


def _run(ns):
    from bpd.config import from_namespace
    from hil.trial import HilRunConfig, run_trial

    s = run_trial(from_namespace(HilRunConfig, ns))
    t = s["timing"]
    for e in s["episodes"]:
        print(f"episode {e['episode']}: return {e['return']:.0f}, {e['length']} ticks, {e['ended']}")
    for line in handover_lines(s.get("handover")):
        print(line)
    if t.get("ticks"):
        step = f"{t['host_step_us']['p99']:.0f} us" if t["host_step_us"]["n"] else "- (device mode)"
        # under QEMU (-icount shift=0) a virtual nanosecond is one instruction: infer_ns counts the policy call's
        # instructions there, not its time on a board (docs/protocol.md rule 16)
        unit = "instructions (QEMU: not a board's time)" if ns.port == "pil" else "ns"
        infer = f"{t['infer_ns']['median']:.0f} {unit}" if t["infer_ns"]["n"] else "-"
        # the device's counter is the core's cycles on a board only: the host build counts nanoseconds and the image
        # under QEMU a SysTick-derived count (docs/protocol.md rule 16; `bpd rig pil` counts instructions)
        host_clock = (s.get("device") or {}).get("cycle_hz") == 1_000_000_000  # the host build: a pty of `bpd rig sim`
        cycles = f" ({t['policy_cycles']['median']:.0f} cycles)" \
            if t["policy_cycles"]["n"] and ns.port not in ("sim", "pil") and not host_clock else ""
        jitter = f"{t['device_jitter_us']['max']:.0f} us" + (" of QEMU's virtual clock" if ns.port == "pil" else "") \
            if t["device_jitter_us"]["n"] else "-"  # under QEMU the host's pace while the image sleeps
        rate = f"{t['achieved_rate_hz']:.1f}" if t["achieved_rate_hz"] is not None else "-"  # one tick: no period
        print(f"rate {rate} Hz (target {t['target_rate_hz']:.1f}); host step p99 {step}; "
              f"on-device inference median {infer}{cycles}; device tick jitter max {jitter}; deadline misses "
              f"{t['deadline_misses']} ({100 * t['deadline_miss_rate']:.2f} %); logs in {ns.out}")


def handover_lines(h: dict | None) -> list[str]:
    """A hand-over trial's controllers, a line per episode: ticks each drove, first hand-over, take-backs."""
    out = []
    for e in (h or {}).get("episodes", []):
        first = f"first hand-over at tick {e['first_handover']}" if e["first_handover"] is not None else "no hand-over"
        back = e["take_backs"]
        backs = ("no take-back" if not back else f"a take-back at tick {back[0]}" if len(back) == 1 else
                 f"{len(back)} take-backs, at ticks {', '.join(map(str, back[:5]))}{', ...' if len(back) > 5 else ''}")
        out.append(f"episode {e['episode']}: ticks driven by the classical controller {e['classical_ticks']}, by the "
                   f"policy {e['policy_ticks']}; {first}, {backs}")
    return out


def _report(ns):
    from bpd.io import read_json
    from hil.report import ended_early, episode_lengths, render, write_html
    from hil.ticklog import read_ticks

    for p in render(ns.log_dir):
        print(p)
    summary = read_json(Path(ns.log_dir) / "summary.json", "trial summary")
    for line in handover_lines(summary.get("handover")):
        print(line)
    if early := ended_early(summary, episode_lengths(read_ticks(Path(ns.log_dir) / "ticks.csv"))):
        print(early)
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
                  "motor polarity, end stops, the emergency stop pressed and released (--estop), loop timing, link "
                  "quality; a table of pass/fail with each fix"),
}
