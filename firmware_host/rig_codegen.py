"""The rig description as C: `bpd_rig_config.h`, generated from a rig YAML the way wire_spec
generates the messages. The firmware core's configuration (period, sizes, encoder counts per unit,
velocity filters, limit indices, watchdog and limit defaults) and the board's baud rate come from
here, so a board builds the same observation as the simulated rig and the Gymnasium env.

    python -m firmware_host.rig_codegen RIG [OUT.h]      # print or write the header
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

from bpd.errors import BpdError
from firmware_host.rig import NAME, RIGS, RigSpec, load_rig
from firmware_host.wire_spec import MAX_OBS

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
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    shown = f"firmware_host/rigs/{path.name}" if path.parent == RIGS else path.name
    return f"{_comment_safe(shown)} (sha256 {digest})"


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
        f" * regenerate with: python -m firmware_host.rig_codegen {spec.name} */",
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
        f"#define BPD_RIG_BAUD {spec.baud}u",
        "",
        "/* A bpd_fw_config_t (bpd_fw.h) initialiser. */",
        "#define BPD_RIG_CONFIG_INIT                                                                 \\",
        "    {                                                                                        \\",
        "        BPD_RIG_PERIOD_US, BPD_RIG_OBS_DIM, BPD_RIG_ACT_DIM,                                 \\",
        "        {BPD_RIG_N_POS, BPD_RIG_MEASURED_VELOCITY, BPD_RIG_COUNTS_PER_UNIT,                  \\",
        "         BPD_RIG_VELOCITY_FILTER_HZ, BPD_RIG_POS_INDEX, BPD_RIG_ANGLE_INDEX},                \\",
        "        BPD_RIG_WATCHDOG_TICKS, BPD_RIG_ACTION_LIMIT, BPD_RIG_POS_LIMIT, BPD_RIG_ANGLE_LIMIT \\",
        "    }",
        "",
        f"#if BPD_RIG_OBS_DIM > {MAX_OBS}",
        "#error the rig has more observations than the wire carries",
        "#endif",
        "", f"#endif /* {guard} */", "",
    ]
    return "\n".join(lines)


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
        print("usage: python -m firmware_host.rig_codegen RIG [OUT.h]", file=sys.stderr)
        return 2
    text = generate_rig_header(load_rig(argv[0]))
    if len(argv) == 2:
        Path(argv[1]).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
