"""The rig description as C: `bpd_rig_config.h`, generated from a rig YAML the way wire_spec
generates the messages. The firmware core's configuration (period, sizes, encoder counts per unit,
velocity filters, limit indices, watchdog and limit defaults, the track) and the board's baud rate come from
here, so a board builds the same observation as the simulated rig and the Gymnasium env.

    python -m firmware_host.rig.codegen RIG [OUT.h]      # print or write the header
    python -m firmware_host.rig.codegen RIG --wiring     # the wiring table (Markdown) of a real board

A rig with a `wiring` block (a real board) also gets its pin map in the header (BPD_WIRING_*): the
board port (boards/board_nucleo_f446.c) takes its timers, pins, inversions and PWM from there.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from bpd.errors import BpdError
from firmware_host.rig import NAME, RIGS, RigSpec, load_rig
from firmware_host.rig.rig_yaml import rig_sha256, spec_files
from firmware_host.rig.wiring import BOARDS, PIN, WIRING_NAME
from firmware_host.wire.spec import MAX_OBS

HEADER = "bpd_rig_config.h"


def _f(x: float) -> str:
    """A C float literal that round-trips through float32."""
    r = repr(float(x))
    return (r if any(c in r for c in ".en") else r + ".0") + "f"


def _floats(xs: list[float]) -> str:
    return "{" + ", ".join(_f(x) for x in xs) + "}"


def source_of(spec: RigSpec) -> str:
    """Where the description came from and its hash, for the banner."""
    path = spec.path
    if path is None or not path.is_file():
        return "in memory"
    files = spec_files(spec)
    digest = rig_sha256(files)[:16]
    names = [f"firmware_host/rig/rigs/{f.name}" if f.parent == RIGS else f.name for f in files]
    return f"{_comment_safe(' on '.join(names))} (sha256 {digest})"


def _comment_safe(text: str) -> str:
    """Text for a C comment: a file name may hold anything, the comment only what cannot end it."""
    return re.sub(r"[^A-Za-z0-9_.,+/ -]", "?", text)


def generate_rig_header(spec: RigSpec, period_us: int | None = None) -> str:
    """The C header for one rig; period_us overrides the rig's control period."""
    if not NAME.fullmatch(spec.name):  # load_rig refuses these; a RigSpec made in code is checked here
        raise BpdError(f"rig name {spec.name[:40]!r} cannot go into C (letters, digits, '-', '_', '.')")
    period = int(period_us or spec.period_us)
    lim = spec.limits
    guard = "BPD_RIG_CONFIG_H"
    cpu, hz = spec.counts_per_unit, spec.velocity_filter_hz
    lines = [
        f"/* generated - do not edit. Source: rig {spec.name!r}, {source_of(spec)};",
        f" * regenerate with: python -m firmware_host.rig.codegen {spec.name} */",
        f"#ifndef {guard}", f"#define {guard}", "",
        f'#define BPD_RIG_NAME "{spec.name}"',
        f"#define BPD_RIG_PERIOD_US {period}u",
        f"#define BPD_RIG_OBS_DIM {spec.obs_dim}u",
        f"#define BPD_RIG_ACT_DIM {spec.act_dim}u",
        f"#define BPD_RIG_N_POS {spec.n_pos}u  /* position sensors; the observation is positions, then velocities */",
        f"#define BPD_RIG_N_RAW {spec.n_pos * (2 if spec.measured_velocity else 1)}u  /* raw readings per tick */",
        f"#define BPD_RIG_MEASURED_VELOCITY {int(spec.measured_velocity)}u",
        f"#define BPD_RIG_COUNTS_PER_UNIT {_floats(cpu)}  /* 0: not an encoder */",
        f"#define BPD_RIG_VELOCITY_FILTER_HZ {_floats(hz)}",
        f"#define BPD_RIG_POS_INDEX {spec.pos_index}u",
        f"#define BPD_RIG_ANGLE_INDEX {spec.angle_index}u",
        f"#define BPD_RIG_WATCHDOG_TICKS {spec.watchdog_ticks}u",
        f"#define BPD_RIG_ACTION_LIMIT {_f(lim['action'])}",
        f"#define BPD_RIG_POS_LIMIT {_f(lim['position'])}",
        f"#define BPD_RIG_ANGLE_LIMIT {_f(lim['angle'])}",
        f"#define BPD_RIG_TRACK {_f(spec.track)}  /* hard stops either side of centre: a CONFIG's widest position "
        "limit (0: no track, no bound) */",
        f"#define BPD_RIG_BAUD {spec.baud}u",
        "",
        "/* A bpd_fw_config_t (bpd_fw.h) initialiser. */",
        "#define BPD_RIG_CONFIG_INIT                                                                 \\",
        "    {                                                                                        \\",
        "        BPD_RIG_PERIOD_US, BPD_RIG_OBS_DIM, BPD_RIG_ACT_DIM,                                 \\",
        "        {BPD_RIG_N_POS, BPD_RIG_MEASURED_VELOCITY, BPD_RIG_COUNTS_PER_UNIT,                  \\",
        "         BPD_RIG_VELOCITY_FILTER_HZ, BPD_RIG_POS_INDEX, BPD_RIG_ANGLE_INDEX},                \\",
        "        BPD_RIG_WATCHDOG_TICKS, BPD_RIG_ACTION_LIMIT, BPD_RIG_POS_LIMIT, BPD_RIG_ANGLE_LIMIT, \\",
        "        BPD_RIG_TRACK                                                                        \\",
        "    }",
        "",
        f"#if BPD_RIG_OBS_DIM > {MAX_OBS}",
        "#error the rig has more observations than the wire carries",
        "#endif",
        *_handover_lines(spec),
        *_wiring_lines(spec),
        "", f"#endif /* {guard} */", "",
    ]
    return "\n".join(lines)


def _handover_lines(spec: RigSpec) -> list[str]:
    """The hand-over region (a bpd_handover_region_t initialiser), where the rig has one."""
    h = spec.handover
    if h is None:
        return []
    return ["", "/* Hand-over mode's region (rule 17): the learned policy acts inside it, the classical controller",
            " * outside; a bpd_handover_region_t (bpd_fw.h) initialiser: the wrapped angle's index, then the bound on",
            " * |observation| (strictly below) of each observation. */",
            f"#define BPD_RIG_HANDOVER_INIT {{{h['angle_index']}u, {_floats(h['bounds'])}}}"]


def _pin(v: str) -> tuple[int, int]:
    """A checked pin name as (port index: A = 0, pin number); refused unless it is one."""
    m = PIN.fullmatch(v)
    if m is None:
        raise BpdError(f"pin {v[:20]!r} cannot go into C")
    return ord(m.group(1)) - ord("A"), int(m.group(2))


def _timer(v: str, table: dict) -> int:
    if v not in table:
        raise BpdError(f"timer {v[:20]!r} cannot go into C")
    return int(v[3:])


def _u(xs: list[int]) -> str:
    return "{" + ", ".join(f"{x}u" for x in xs) + "}"


def _mask(stops: list[dict], side: int) -> int:
    """The stop inputs (bits in wiring order) that block commands of this sign: an end stop on that
    side (the sign of its `at`), and the emergency stop (no `at`) on both."""
    return sum(1 << i for i, s in enumerate(stops) if "at" not in s or (float(s["at"]) > 0) == (side > 0))


def _wiring_lines(spec: RigSpec) -> list[str]:
    """The pin map of a real board, from the rig's checked `wiring` block (load_rig checks it; each
    value is matched again here, as a RigSpec made in code is not)."""
    w = spec.wiring
    if w is None:
        return []
    if w.get("board") not in BOARDS:
        raise BpdError(f"board {str(w.get('board'))[:20]!r} cannot go into C")
    b = BOARDS[w["board"]]
    enc, m = w["encoders"], w["motor"]
    stops = [*w.get("end_stops", []), *([{"name": "estop", "pin": w["estop"]}] if "estop" in w else [])]
    for x in [*enc, *stops]:
        if not WIRING_NAME.fullmatch(str(x["name"])):
            raise BpdError(f"wiring name {str(x['name'])[:20]!r} cannot go into C")
    a = [_pin(e["a"]) for e in enc]
    bb = [_pin(e["b"]) for e in enc]
    sp = [_pin(s["pin"]) for s in stops]
    pwm, dr = _pin(m["pwm"]), _pin(m["dir"])
    board = str(w["board"]).upper().replace("-", "_")
    return [
        "",
        f"/* The wiring of a real board ({w['board']}): the rig YAML's wiring block. Ports: A = 0, B = 1, ... */",
        "#define BPD_WIRING 1",
        f"#define BPD_WIRING_BOARD_{board} 1",
        f"#define BPD_ENC_N {len(enc)}u",
        f"#define BPD_ENC_TIMER {_u([_timer(e['timer'], b['encoder']) for e in enc])}  "
        f"/* {', '.join(e['name'] for e in enc)} */",
        f"#define BPD_ENC_A_PORT {_u([p for p, _ in a])}",
        f"#define BPD_ENC_A_PIN {_u([n for _, n in a])}",
        f"#define BPD_ENC_B_PORT {_u([p for p, _ in bb])}",
        f"#define BPD_ENC_B_PIN {_u([n for _, n in bb])}",
        f"#define BPD_ENC_INVERT {_u([int(bool(e.get('invert', False))) for e in enc])}",
        f"#define BPD_ENC_POWER_ON_COUNTS "
        f"{_floats([float(round(float(e.get('at_power_on', 0.0)) * c)) for e, c in zip(enc, spec.counts_per_unit)])}"
        "  /* the reading at power-on, in counts */",
        f"#define BPD_MOTOR_TIMER {_timer(m['timer'], b['pwm'])}u",
        f"#define BPD_MOTOR_CHANNEL {int(m['channel'])}u",
        f"#define BPD_MOTOR_PWM_PORT {pwm[0]}u",
        f"#define BPD_MOTOR_PWM_PIN {pwm[1]}u",
        f"#define BPD_MOTOR_DIR_PORT {dr[0]}u",
        f"#define BPD_MOTOR_DIR_PIN {dr[1]}u",
        f"#define BPD_MOTOR_PWM_HZ {int(m['pwm_hz'])}u",
        f"#define BPD_MOTOR_FULL_SCALE {_f(m['full_scale'])}",
        f"#define BPD_MOTOR_INVERT {int(bool(m.get('invert', False)))}u",
        f"#define BPD_STOP_N {len(stops)}u  /* {', '.join(s['name'] for s in stops) or 'none'} */",
        f"#define BPD_STOP_PORT {_u([p for p, _ in sp]) if sp else '{0u}'}",
        f"#define BPD_STOP_PIN {_u([n for _, n in sp]) if sp else '{0u}'}",
        f"#define BPD_STOP_ACTIVE_LOW {int(bool(w.get('stops_active_low', True)))}u",
        f"#define BPD_STOP_BLOCKS_POSITIVE {_mask(stops, 1)}u  /* inputs that block positive commands while held */",
        f"#define BPD_STOP_BLOCKS_NEGATIVE {_mask(stops, -1)}u",
    ]


def wiring_table(spec: RigSpec) -> str:
    """The wiring of a real board as a Markdown table, from the same block as the pin map."""
    w = spec.wiring
    if w is None:
        raise BpdError(f"rig {spec.name} has no wiring block (a simulated rig only)")
    m = w["motor"]
    low = bool(w.get("stops_active_low", True))
    rows = [("signal", "board pin", "function", "note")]
    units = spec.raw.get("units", {})
    unit = {spec.pos_index: units.get("position", "unit"), spec.angle_index: units.get("angle", "unit")}
    for i, e in enumerate(w["encoders"]):
        inv = ", counted inverted" if e.get("invert") else ""
        cpu = spec.counts_per_unit[i]
        for ch, key in (("A", "a"), ("B", "b")):
            rows.append((f"{e['name']} encoder {ch}", e[key],
                         f"{e['timer']} channel {1 if ch == 'A' else 2}, encoder mode",
                         f"{cpu:g} counts per {str(unit.get(i, 'unit')).split(' ')[0]} (4 per line){inv}"))
    inv = ", direction inverted" if m.get("invert") else ""
    rows.append(("motor PWM", m["pwm"], f"{m['timer']} channel {m['channel']}, {m['pwm_hz']} Hz",
                 f"100 % duty = {m['full_scale']:g} {spec.raw.get('units', {}).get('action', '')}".rstrip() + inv))
    rows.append(("motor direction", m["dir"], "GPIO output",
                 f"high: {'positive' if m.get('invert') else 'negative'} command (to the H-bridge's DIR)"))
    level = "to ground, pull-up inside" if low else "to 3.3 V, pull-down inside"
    for s in w.get("end_stops", []):
        rows.append((f"end stop {s['name']}", s["pin"], f"EXTI line {int(s['pin'][2:])}, both edges",
                     f"{level}; closes at {float(s['at']):+g}, blocks {'positive' if s['at'] > 0 else 'negative'} "
                     "commands while pressed"))
    if "estop" in w:
        rows.append(("emergency stop", w["estop"], f"EXTI line {int(w['estop'][2:])}, both edges",
                     f"{level}; ends the run at every tick while pressed (released: only a new START runs)"))
    rows.append(("host link TX", "PA2", "USART2, ST-LINK virtual COM port",
                 f"{spec.baud} baud 8N1, over the USB cable"))
    rows.append(("host link RX", "PA3", "USART2, ST-LINK virtual COM port", "over the USB cable"))
    out = [f"<!-- generated from firmware_host/rig/rigs/{spec.name}.yaml: python -m firmware_host.rig.codegen "
           f"{spec.name} --wiring -->"]
    out += ["| " + " | ".join(r) + " |" for r in rows[:1]] + ["|" + "---|" * len(rows[0])]
    out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(out) + "\n"


def write_rig_header(spec: RigSpec, out_dir: Path, period_us: int | None = None) -> Path:
    """Write bpd_rig_config.h into out_dir (only when its text changed, so builds stay cached)."""
    from bpd.io import write_text

    path = out_dir / HEADER
    text = generate_rig_header(spec, period_us)
    if not path.is_file() or path.read_text() != text:
        write_text(path, text)
    return path


def main(argv: list[str]) -> int:
    if not argv or len(argv) > 2:
        print("usage: python -m firmware_host.rig.codegen RIG [OUT.h | --wiring]", file=sys.stderr)
        return 2
    if argv[1:] == ["--wiring"]:
        sys.stdout.write(wiring_table(load_rig(argv[0])))
        return 0
    text = generate_rig_header(load_rig(argv[0]))
    if len(argv) == 2:
        Path(argv[1]).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
