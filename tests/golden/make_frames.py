"""Regenerate tests/golden/frames.json: one or more frames of every message, with the fields they
carry and their exact bytes.    python tests/golden/make_frames.py"""

import json
from pathlib import Path

from firmware_host.wire.codec import encode

CASES = [
    ("hello", 1, dict(protocol=1)),
    ("info", 2, dict(protocol=6, fw_major=0, fw_minor=8, obs_dim=4, act_dim=1, caps=7, period_us=40000,
                     model_hash=[0x3f, 0x1c, 0x0a, 0xc8, 0x1c, 0x44, 0x55, 0x97], boot=1, rx_dropped=0,
                     actions_dropped=0, selftest=1,
                     cycle_hz=1_000_000_000)),
    ("info", 0, dict(protocol=6, fw_major=0, fw_minor=8, obs_dim=16, act_dim=4, caps=0, period_us=2000,
                     model_hash=[0] * 8, boot=65535, rx_dropped=70000, actions_dropped=4294967295, selftest=2,
                     cycle_hz=168_000_000)),
    ("config", 3, dict(period_us=5000, watchdog_ticks=10, mode=1, action_limit=3.0, pos_limit=0.9,
                       angle_limit=0.2)),
    ("config", 5, dict(period_us=2000, watchdog_ticks=10, mode=2, action_limit=10.0, pos_limit=2.0,
                       angle_limit=12.0)),
    ("start", 4, {}), ("stop", 65535, {}), ("reset", 0, dict(seed=123456789)),
    ("ack", 9, dict(of=3, status=0, echo_seq=3)),
    ("ack", 14, dict(of=4, status=1, echo_seq=65535)),
    ("state", 10, dict(t_us=4294967295, infer_ns=2100, rtt_us=850, flags=0x21, policy_cycles=352,
                       jitter_us=3, jitter_max_us=41, n_obs=4, n_act=1,
                       obs=[0.0, -0.015625, 0.5, 1e-3], action=[-3.0])),
    ("state", 11, dict(t_us=0, infer_ns=0, rtt_us=0, flags=0, policy_cycles=0, jitter_us=0,
                       jitter_max_us=0, n_obs=0, n_act=0, obs=[], action=[])),
    ("state", 12, dict(t_us=256, infer_ns=65536, rtt_us=4294967295, flags=0x3FF,
                       policy_cycles=4294967295, jitter_us=65536, jitter_max_us=70000, n_obs=16, n_act=4,
                       obs=[float(i) - 7.5 for i in range(16)], action=[0.0, 1.0, -1.0, 2.5])),
    # the run's last STATE when the emergency stop ended it: its own flag (bit 9) alone, the action zero
    ("state", 13, dict(t_us=123456, infer_ns=0, rtt_us=0, flags=0x200, policy_cycles=0, jitter_us=0,
                       jitter_max_us=2, n_obs=4, n_act=1, obs=[0.01, 3.1415927, 0.0, 0.0], action=[0.0])),
    ("action", 10, dict(echo_seq=10, n_act=1, action=[1.25])),
    ("action", 0, dict(echo_seq=0, n_act=2, action=[0.0, -0.0])),
    ("fault", 13, dict(code=1, detail=10)),
    ("fault", 14, dict(code=2, detail=0x80000001)),
    ("fault", 15, dict(code=2, detail=0x40000100)),
]

if __name__ == "__main__":
    out = [{"name": n, "seq": s, "fields": f, "hex": encode(n, s, **f).hex()} for n, s, f in CASES]
    Path(__file__).with_name("frames.json").write_text(json.dumps(out, indent=1) + "\n")
