"""The `wiring` block of a rig's YAML: what a real board's port may name (pins, encoder timers, PWM
timers) and the check of a rig's wiring against it. The rig spec (firmware_host/rig/__init__.py) calls
check_wiring when it reads a YAML; codegen.py turns a checked block into bpd_rig_config.h."""

from __future__ import annotations

import math
import re
from typing import Any

# What a board's wiring may name, from its reference manual and datasheet (STM32F446RE: RM0390, the
# datasheet's alternate-function table): the timers with an encoder mode and the pins of their
# channels 1 and 2, the timers a PWM output may come from and the pins of each channel, and the GPIO
# ports the package brings out. Nothing else reaches the generated C.
PIN = re.compile(r"P([A-H])(1[0-5]|[0-9])")
BOARDS: dict[str, dict[str, Any]] = {
    "nucleo-f446": {
        "ports": "ABCH",
        "encoder": {"TIM2": (("PA0", "PA5", "PA15"), ("PA1", "PB3")),
                    "TIM3": (("PA6", "PB4", "PC6"), ("PA7", "PB5", "PC7")),
                    "TIM4": (("PB6",), ("PB7",)), "TIM5": (("PA0",), ("PA1",))},
        "pwm": {"TIM1": (("PA8",), ("PA9",), ("PA10",), ("PA11",)),
                "TIM3": (("PA6", "PB4", "PC6"), ("PA7", "PB5", "PC7"), ("PB0", "PC8"), ("PB1", "PC9"))},
        "reserved": {"PA2": "USART2 TX (ST-LINK virtual COM port)", "PA3": "USART2 RX (ST-LINK virtual COM port)",
                     "PA13": "SWDIO (the probe)", "PA14": "SWCLK (the probe)"},
        "pwm_hz": (1000, 100000),
    },
}
WIRING_NAME = re.compile(r"[a-z][a-z0-9_]{0,23}")


def check_wiring(w: object, counts_per_unit: list, measured_velocity: bool, bad) -> None:
    """The `wiring` block of a rig: one encoder per position sensor, a PWM + direction motor output,
    end stops and an emergency stop on a board bpd has a port for. Every name and pin is matched
    against a pattern and the board's table, so nothing reaches generated C unchecked."""
    if not isinstance(w, dict):
        raise bad("wiring must be a mapping")
    unknown = set(w) - {"board", "encoders", "motor", "end_stops", "estop", "stops_active_low"}
    if unknown:
        raise bad(f"wiring: unknown key {sorted(map(str, unknown))[0][:40]!r}")
    board = w.get("board")
    if not isinstance(board, str) or board not in BOARDS:
        raise bad(f"wiring.board must be one of {', '.join(BOARDS)} (got {str(board)[:40]!r})")
    b = BOARDS[board]
    used: dict[str, str] = {}

    def pin(v: object, key: str, allowed: tuple[str, ...] | None = None) -> str:
        if not isinstance(v, str) or not PIN.fullmatch(v) or v[1] not in b["ports"]:
            raise bad(f"{key} must be a pin P<port><0-15> on ports {', '.join(b['ports'])} (got {str(v)[:40]!r})")
        if allowed is not None and v not in allowed:
            raise bad(f"{key}: {v} cannot carry this signal (one of {', '.join(allowed)})")
        if v in b["reserved"]:
            raise bad(f"{key}: {v} is taken by {b['reserved'][v]}")
        if v in used:
            raise bad(f"{key}: {v} is already {used[v]}")
        used[v] = key
        return v

    def flag(block: dict, key: str, where: str) -> None:
        if key in block and not isinstance(block[key], bool):
            raise bad(f"{where}.{key} must be true or false (got {str(block[key])[:40]!r})")

    def name(block: dict, where: str) -> None:
        if not isinstance(block.get("name"), str) or not WIRING_NAME.fullmatch(block["name"]):
            raise bad(f"{where}.name must be 1 to 24 lower-case letters, digits or '_' (got "
                      f"{str(block.get('name'))[:40]!r})")

    if measured_velocity or any(float(c) <= 0 for c in counts_per_unit):
        raise bad("wiring needs every position sensor to be an encoder (counts_per_unit > 0, measured_velocity false)")
    enc = w.get("encoders")
    if not isinstance(enc, list) or len(enc) != len(counts_per_unit):
        raise bad(f"wiring.encoders must list one encoder per position sensor ({len(counts_per_unit)})")
    timers: set[str] = set()
    for i, e in enumerate(enc):
        where = f"wiring.encoders[{i}]"
        if not isinstance(e, dict) or set(e) - {"name", "timer", "a", "b", "invert", "at_power_on"}:
            raise bad(f"{where} must be a mapping of name, timer, a, b, invert, at_power_on")
        p0 = e.get("at_power_on", 0.0)
        if isinstance(p0, bool) or not isinstance(p0, (int, float)) or not math.isfinite(p0) or abs(p0) > 1e3:
            raise bad(f"{where}.at_power_on must be the reading at power-on, a finite number (got {str(p0)[:40]!r})")
        name(e, where)
        if e.get("timer") not in b["encoder"]:
            raise bad(f"{where}.timer must be one of {', '.join(b['encoder'])} (got {str(e.get('timer'))[:40]!r})")
        if e["timer"] in timers:
            raise bad(f"{where}.timer: {e['timer']} already counts another encoder")
        timers.add(e["timer"])
        ch1, ch2 = b["encoder"][e["timer"]]
        pin(e.get("a"), f"{where}.a", ch1)
        pin(e.get("b"), f"{where}.b", ch2)
        flag(e, "invert", where)
    m = w.get("motor")
    if not isinstance(m, dict) or set(m) - {"timer", "channel", "pwm", "dir", "pwm_hz", "full_scale", "invert"}:
        raise bad("wiring.motor must be a mapping of timer, channel, pwm, dir, pwm_hz, full_scale, invert")
    if m.get("timer") not in b["pwm"] or m["timer"] in timers:
        raise bad(f"wiring.motor.timer must be one of {', '.join(b['pwm'])} and no encoder's "
                  f"(got {str(m.get('timer'))[:40]!r})")
    ch = m.get("channel")
    if isinstance(ch, bool) or not isinstance(ch, int) or not 1 <= ch <= len(b["pwm"][m["timer"]]):
        raise bad(f"wiring.motor.channel must be 1..{len(b['pwm'][m['timer']])} (got {str(ch)[:40]!r})")
    pin(m.get("pwm"), "wiring.motor.pwm", b["pwm"][m["timer"]][ch - 1])
    pin(m.get("dir"), "wiring.motor.dir")
    hz = m.get("pwm_hz")
    lo, hi = b["pwm_hz"]
    if isinstance(hz, bool) or not isinstance(hz, int) or not lo <= hz <= hi:
        raise bad(f"wiring.motor.pwm_hz must be a whole number {lo}..{hi} (got {str(hz)[:40]!r})")
    fs = m.get("full_scale")
    if isinstance(fs, bool) or not isinstance(fs, (int, float)) or not math.isfinite(fs) or not 0 < fs <= 1e6:
        raise bad(f"wiring.motor.full_scale must be the command of 100 % duty, above 0 (got {str(fs)[:40]!r})")
    flag(m, "invert", "wiring.motor")
    stops = w.get("end_stops", [])
    if not isinstance(stops, list) or len(stops) > 6:
        raise bad("wiring.end_stops must list at most 6 stops")
    lines: dict[int, str] = {}
    for i, s in enumerate([*stops, {"name": "estop", "pin": w.get("estop")}] if "estop" in w else stops):
        where = f"wiring.end_stops[{i}]" if i < len(stops) else "wiring.estop"
        if i < len(stops):
            if not isinstance(s, dict) or set(s) != {"name", "pin", "at"}:
                raise bad(f"{where} must be a mapping of name, pin and at (the position where it closes)")
            at = s["at"]
            if isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at) or at == 0:
                raise bad(f"{where}.at must be the position where the stop closes, not 0: its sign is its side "
                          f"(got {str(at)[:40]!r})")
        name(s, where)
        v = pin(s.get("pin"), where if where == "wiring.estop" else f"{where}.pin")
        line = int(v[2:])
        if line in lines:  # one port per external-interrupt line
            raise bad(f"{where}: {v} shares interrupt line {line} with {lines[line]}; choose another pin number")
        lines[line] = v
    flag(w, "stops_active_low", "wiring")
