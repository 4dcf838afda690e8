"""The wire protocol, defined once. The C header firmware_host/c/core/bpd_msgs.h is generated from
this table (`python -m firmware_host.wire.spec`), and the Python codec (firmware_host/wire/codec.py) reads it
directly. Both are checked against the same golden frames (tests/golden/frames.json). docs/protocol.md
explains it.
"""

from __future__ import annotations

from dataclasses import dataclass

PROTOCOL_VERSION = 6  # 2: INFO carries the boot counter and drop counters, ACK the command's seq; 3: the self-test
# result in INFO; 4: the policy call's cycles and the tick's jitter in STATE, the cycle counter's rate in INFO;
# 5: hand-over mode (mode 2, CONFIG), its capability bit (INFO) and the classical flag (STATE); 6: the emergency
# stop's own flag (STATE), where version 5 ended its run as a limit stop
MAX_PAYLOAD = 254  # id + seq + body + crc
MAX_ENCODED = MAX_PAYLOAD + 2  # COBS of 254 bytes: one code byte, and a closing code byte when no zero
MAX_FRAME = MAX_ENCODED + 2  # with both delimiters: the largest frame on the wire
MAX_OBS = 16
MAX_ACT = 4

SIZES = {"u8": 1, "u16": 2, "u32": 4, "f32": 4}
STRUCT = {"u8": "B", "u16": "H", "u32": "I", "f32": "f"}
CTYPE = {"u8": "uint8_t", "u16": "uint16_t", "u32": "uint32_t", "f32": "float"}


@dataclass(frozen=True)
class Field:
    name: str
    type: str          # u8, u16, u32, f32
    count: str | int = 1  # a fixed length, or the name of an earlier field holding the length
    max: int = 1       # capacity for variable-length arrays


@dataclass(frozen=True)
class Message:
    id: int
    name: str
    sender: str        # "host" or "device"
    fields: tuple[Field, ...]
    doc: str


F = Field
MESSAGES: tuple[Message, ...] = (
    Message(0x01, "hello", "host", (F("protocol", "u8"),), "host opens a session; the device answers INFO"),
    Message(0x02, "info", "device", (
        F("protocol", "u8"), F("fw_major", "u8"), F("fw_minor", "u8"), F("obs_dim", "u8"), F("act_dim", "u8"),
        F("caps", "u8"), F("period_us", "u32"), F("model_hash", "u8", 8, 8), F("boot", "u16"),
        F("rx_dropped", "u32"), F("actions_dropped", "u32"), F("selftest", "u8"), F("cycle_hz", "u32")),
        "device description: versions, sizes, control period, first 8 bytes of the on-device model hash, "
        "boot counter, frames and actions dropped since power-on, the policy's self-test, the rate of the "
        "cycle counter; also sent unasked once at power-on"),
    Message(0x03, "config", "host", (
        F("period_us", "u32"), F("watchdog_ticks", "u16"), F("mode", "u8"), F("action_limit", "f32"),
        F("pos_limit", "f32"), F("angle_limit", "f32")),
        "control period, watchdog, mode (0 host policy, 1 device policy, 2 hand-over) and safety limits"),
    Message(0x04, "start", "host", (), "start running (state frames every tick)"),
    Message(0x05, "stop", "host", (), "stop: actuator to zero, state IDLE"),
    Message(0x06, "reset", "host", (F("seed", "u32"),), "stop, clear faults and reset the plant (a rig may use seed)"),
    Message(0x07, "ack", "device", (F("of", "u8"), F("status", "u8"), F("echo_seq", "u16")),
            "answer to config/start/stop/reset: its id, the status and its header seq"),
    Message(0x10, "state", "device", (
        F("t_us", "u32"), F("infer_ns", "u32"), F("rtt_us", "u32"), F("flags", "u16"), F("policy_cycles", "u32"),
        F("jitter_us", "u32"), F("jitter_max_us", "u32"), F("n_obs", "u8"), F("n_act", "u8"),
        F("obs", "f32", "n_obs", MAX_OBS), F("action", "f32", "n_act", MAX_ACT)),
        "one control tick: device time, inference time, round trip of the previous exchange, flags, the "
        "policy call's cycles, the tick's jitter and its largest in the run, observation, action applied"),
    Message(0x11, "action", "host", (F("echo_seq", "u16"), F("n_act", "u8"), F("action", "f32", "n_act", MAX_ACT)),
            "host's action for the state whose sequence number it echoes"),
    Message(0x12, "fault", "device", (F("code", "u8"), F("detail", "u32")), "the device entered FAULT"),
)
BY_ID = {m.id: m for m in MESSAGES}
BY_NAME = {m.name: m for m in MESSAGES}

FLAGS = {"running": 1 << 0, "clamped": 1 << 1, "limit_stop": 1 << 2, "watchdog": 1 << 3, "overrun": 1 << 4,
         "device_policy": 1 << 5, "policy_error": 1 << 6, "stale_action": 1 << 7, "classical": 1 << 8,
         "estop": 1 << 9}
# The watchdog faults the device, and a START that would run a policy whose self-test failed: a limit stop or an
# end stop ends the run (IDLE, flag bit 2), the emergency stop too (flag bit 9), a bad CONFIG or device mode
# without a policy is refused with an ACK, a policy error is flagged and the safe action used.
STOPPED = FLAGS["limit_stop"] | FLAGS["estop"]  # the flags of a STATE whose run the device ended by a stop
FAULTS = {"none": 0, "watchdog": 1, "selftest": 2}
# The policy's boot self-test (INFO's selftest): no stored pair (or no policy), passed, failed.
SELFTEST = {"none": 0, "pass": 1, "fail": 2}
ACK = {"ok": 0, "rejected": 1}
CAPS = {"device_policy": 1 << 0, "encoders": 1 << 1, "handover": 1 << 2}
# hand-over (rule 17): the classical controller outside the rig's hand-over region, the learned policy inside it
MODES = {"host": 0, "device": 1, "handover": 2}
STATES = {"idle": 0, "running": 1, "fault": 2}  # the device's state machine (docs/protocol.md)


def generate_c_header() -> str:
    out = ["/* generated - do not edit. Source: firmware_host/wire/spec.py;",
           " * regenerate with: python -m firmware_host.wire.spec */",
           "#ifndef BPD_MSGS_H", "#define BPD_MSGS_H", "", "#include <stddef.h>", "#include <stdint.h>", "",
           f"#define BPD_PROTOCOL_VERSION {PROTOCOL_VERSION}", f"#define BPD_MAX_PAYLOAD {MAX_PAYLOAD}",
           f"#define BPD_MAX_ENCODED {MAX_ENCODED}", f"#define BPD_MAX_FRAME {MAX_FRAME}",
           f"#define BPD_MAX_OBS {MAX_OBS}", f"#define BPD_MAX_ACT {MAX_ACT}", ""]
    for group, table in (("FLAG", FLAGS), ("FAULT", FAULTS), ("SELFTEST", SELFTEST), ("ACK", ACK), ("CAP", CAPS),
                         ("MODE", MODES), ("STATE", STATES)):
        out += [f"#define BPD_{group}_{k.upper()} {v}u" for k, v in table.items()] + [""]
    for m in MESSAGES:
        out.append(f"#define BPD_MSG_{m.name.upper()} 0x{m.id:02X}u /* {m.sender}: {m.doc} */")
    out.append("")
    for m in MESSAGES:
        out.append("typedef struct {" + ("" if m.fields else " uint8_t unused_;"))
        for f in m.fields:
            arr = f"[{f.max}]" if (f.count != 1) else ""
            out.append(f"    {CTYPE[f.type]} {f.name}{arr};")
        out.append(f"}} bpd_{m.name}_t;")
        out.append(f"size_t bpd_pack_{m.name}(const bpd_{m.name}_t *m, uint8_t *body, size_t cap);")
        out.append(f"int bpd_unpack_{m.name}(const uint8_t *body, size_t len, bpd_{m.name}_t *m);")
        out.append("")
    out += ["#endif", ""]
    return "\n".join(out)


def generate_c_source() -> str:
    out = ["/* generated - do not edit. Source: firmware_host/wire/spec.py;",
           " * regenerate with: python -m firmware_host.wire.spec */",
           '#include "bpd_msgs.h"', '#include "bpd_wire.h"', ""]
    for m in MESSAGES:
        out.append(f"size_t bpd_pack_{m.name}(const bpd_{m.name}_t *m, uint8_t *body, size_t cap)\n{{")
        out.append("    size_t n = 0;")
        out.append("    (void)m; (void)body;" if not m.fields else "")
        for f in m.fields:
            if f.count == 1:
                out.append(f"    if (n + {SIZES[f.type]} > cap) return 0;")
                out.append(f"    bpd_put_{f.type}(body + n, m->{f.name}); n += {SIZES[f.type]};")
            else:
                cnt = f"m->{f.count}" if isinstance(f.count, str) else str(f.count)
                out.append("    {\n        size_t i;")
                out.append(f"        if ({cnt} > {f.max} || n + (size_t){cnt} * {SIZES[f.type]} > cap) return 0;")
                out.append(f"        for (i = 0; i < (size_t){cnt}; ++i) {{ "
                           f"bpd_put_{f.type}(body + n, m->{f.name}[i]); n += {SIZES[f.type]}; }}\n    }}")
        out.append("    (void)cap;\n    return n;\n}\n")
        out.append(f"int bpd_unpack_{m.name}(const uint8_t *body, size_t len, bpd_{m.name}_t *m)\n{{")
        out.append("    size_t n = 0;")
        out.append("    (void)body; (void)m;" if not m.fields else "")
        for f in m.fields:
            if f.count == 1:
                out.append(f"    if (n + {SIZES[f.type]} > len) return -1;")
                out.append(f"    m->{f.name} = bpd_get_{f.type}(body + n); n += {SIZES[f.type]};")
            else:
                cnt = f"m->{f.count}" if isinstance(f.count, str) else str(f.count)
                out.append("    {\n        size_t i;")
                out.append(f"        if ({cnt} > {f.max} || n + (size_t){cnt} * {SIZES[f.type]} > len) return -1;")
                out.append(f"        for (i = 0; i < (size_t){cnt}; ++i) {{ "
                           f"m->{f.name}[i] = bpd_get_{f.type}(body + n); n += {SIZES[f.type]}; }}\n    }}")
        out.append("    return n == len ? 0 : -1;\n}\n")
    return "\n".join(line for line in out if line != "")


def generate_c_dump() -> str:
    """Host-only helpers for tests: print a decoded message as `name seq field=value ...`; unpack a body and pack
    it again, for every message in the table (a harness that lists the messages by hand misses a new one)."""
    out = ["/* generated - do not edit. Source: firmware_host/wire/spec.py (host tests only) */",
           "#include <stdio.h>", '#include "bpd_msgs.h"', "",
           "/* Returns the number of characters written, or -1 for an unknown id or a bad body. */",
           "int bpd_msg_dump(uint8_t id, uint16_t seq, const uint8_t *body, size_t len, char *out, size_t cap)",
           "{", "    int n = 0;", "    size_t i;", "    (void)i;", "    switch (id) {"]
    for m in MESSAGES:
        out.append(f"    case 0x{m.id:02X}u: {{")
        out.append(f"        bpd_{m.name}_t m;")
        out.append(f"        if (bpd_unpack_{m.name}(body, len, &m) != 0) return -1;")
        out.append(f'        n += snprintf(out + n, cap - (size_t)n, "{m.name} %u", (unsigned)seq);')
        for f in m.fields:
            fmt, cast = ('%.9g', '(double)') if f.type == "f32" else ('%lu', '(unsigned long)')
            if f.count == 1:
                out.append(f'        n += snprintf(out + n, cap - (size_t)n, " {f.name}={fmt}", {cast}m.{f.name});')
            else:
                cnt = f"m.{f.count}" if isinstance(f.count, str) else str(f.count)
                out.append(f'        n += snprintf(out + n, cap - (size_t)n, " {f.name}=");')
                out.append(f"        for (i = 0; i < (size_t){cnt}; ++i) n += snprintf(out + n, cap - (size_t)n, "
                           f'"%s{fmt}", i ? "," : "", {cast}m.{f.name}[i]);')
        out.append("        return n;\n    }")
    out += ["    default:", "        return -1;", "    }", "}", "",
            "/* Unpacks a body and packs the message again (the codec's round trip, for wire_selftest and the parser's",
            " * fuzz harness): the packed length, or -1 for an unknown id or a body its unpack refuses. */",
            "int bpd_msg_repack(uint8_t id, const uint8_t *body, size_t len, uint8_t *out, size_t cap)",
            "{", "    switch (id) {"]
    for m in MESSAGES:
        out += [f"    case 0x{m.id:02X}u: {{", f"        bpd_{m.name}_t m;",
                f"        if (bpd_unpack_{m.name}(body, len, &m) != 0) return -1;",
                f"        return (int)bpd_pack_{m.name}(&m, out, cap);", "    }"]
    out += ["    default:", "        return -1;", "    }", "}", ""]
    return "\n".join(out)


if __name__ == "__main__":
    from pathlib import Path

    here = Path(__file__).resolve().parents[1] / "c" / "core"
    (here / "bpd_msgs.h").write_text(generate_c_header())
    (here / "bpd_msgs.c").write_text(generate_c_source() + "\n")
    (here / "bpd_msgs_dump.c").write_text(generate_c_dump())
    print(f"wrote bpd_msgs.h, bpd_msgs.c and bpd_msgs_dump.c in {here}")
