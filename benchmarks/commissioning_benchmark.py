"""Commissioning benchmark: `bpd rig check --estop` against the simulated desktop-cartpole on the bench (its
emergency stop pressed and released by the simulated rig's hand), once correctly wired and once with each wiring
fault the simulated rig can be given, over several seeds.
A fault counts as detected and named when the check its finding names failed with its fix
(hil/commission.py FINDINGS); the clean rig must pass every check.

    python benchmarks/commissioning_benchmark.py [--seeds 3]

Writes benchmarks/results/commissioning.json and commissioning.md: per case, how often it was found
(or passed), the other checks that failed beside it, the time the check took (from the handshake to
the verdict) and the time of the whole command (starting the simulated rig included).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

from firmware_host.rig.sim import FAULTS
from hil.commission import FINDINGS, RigCheckConfig, found, run_check
from hil.estop import PRESS_AFTER_S

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
RIG = "desktop-cartpole"


def run(seeds: int) -> dict:
    cases = []
    for fault in [None, *sorted(FAULTS)]:
        runs = []
        for seed in range(seeds):
            with tempfile.TemporaryDirectory() as rec:
                t0 = time.perf_counter()
                r = run_check(RigCheckConfig(port="sim", rig=RIG, fault=fault, record=rec, seed=seed, estop=True))
                wall = time.perf_counter() - t0
            ok = r["passed"] if fault is None else found(r, fault)
            expected = FINDINGS[fault][0] if fault else None
            runs.append({"seed": seed, "ok": ok, "failed": r["failed"],
                         "also_failed": [n for n in r["failed"] if n != expected],
                         "check_seconds": r["seconds"], "command_seconds": round(wall, 2),
                         "ticks": r["ticks"], "device_seconds": r["device_seconds"]})
        cases.append({"fault": fault or "none", "description": FAULTS.get(fault or "", "correctly wired"),
                      "expected": FINDINGS[fault][0] if fault else "every check passes",
                      "ok": sum(x["ok"] for x in runs), "runs": len(runs),
                      "also_failed": sorted({n for x in runs for n in x["also_failed"]}),
                      "check_seconds_median": statistics.median(x["check_seconds"] for x in runs),
                      "command_seconds_median": statistics.median(x["command_seconds"] for x in runs),
                      "device_seconds_median": statistics.median(x["device_seconds"] for x in runs),
                      "per_seed": runs})
    faults = [c for c in cases if c["fault"] != "none"]
    return {"rig": RIG, "seeds": seeds, "cases": cases,
            "faults_detected_and_named": f"{sum(c['ok'] for c in faults)}/{sum(c['runs'] for c in faults)}",
            "clean_rig_passed": f"{cases[0]['ok']}/{cases[0]['runs']}",
            "environment": {"python": platform.python_version(), "machine": platform.machine()},
            "command": f"python benchmarks/commissioning_benchmark.py --seeds {seeds}"}


def markdown(res: dict) -> str:
    lines = [f"Written by `{res['command']}`.", "",
             f"`bpd rig check --port sim --rig {res['rig']} --estop [--fault NAME]`: the simulated rig on the bench "
             "(lockstep, the pendulum hanging at rest), the motor limited to 0.3 of the action limit. A fault is "
             "detected and named when the check its finding names (hil/commission.py FINDINGS) failed with its "
             f"fix. Seeds per case: {res['seeds']}.", "",
             f"Faults detected and named: **{res['faults_detected_and_named']}**; the correctly wired rig passed: "
             f"**{res['clean_rig_passed']}**.", "",
             "| case | what is wrong | must fail | found / runs | other checks that failed | check s (median) | "
             "command s (median, rig start included) | control ticks' time s (a board's, median) |",
             "|---|---|---|---|---|---|---|---|"]
    for c in res["cases"]:
        lines.append(f"| {c['fault']} | {c['description']} | {c['expected']} | {c['ok']}/{c['runs']} | "
                     f"{', '.join(c['also_failed']) or '-'} | {c['check_seconds_median']:.2f} | "
                     f"{c['command_seconds_median']:.2f} | {c['device_seconds_median']:.2f} |")
    lines += ["", "The check's time runs from the handshake to the verdict (rest 1 s, the move 0.75 s and, once the "
              "motor and the cart encoder are proven, the two end-stop drives, the drive back to the centre and the "
              "emergency stop: the motor held at zero until the press, then a push each way after the release), "
              "on the simulated rig in lockstep, which runs faster than real time where nothing waits. A board runs "
              "the same control ticks in their real time: the last column (ticks x the rig's 5 ms period), plus the "
              "commands between the runs. The emergency stop is pressed by the simulated rig's hand (`bpd rig sim "
              f"--estop-stdin`) {PRESS_AFTER_S:g} s into the hold and released once the run has ended; on a board "
              "the technician at the terminal does both when told (the check waits at most --estop-window seconds "
              "for each), so there the hold lasts as long as the hand takes."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    res = run(args.seeds)
    (RESULTS / "commissioning.json").write_text(json.dumps(res, indent=2) + "\n")
    (RESULTS / "commissioning.md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
