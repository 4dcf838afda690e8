"""Estimated cycles from an emulated instruction mix. ESTIMATES, not measurements.

Assumptions (see docs/cycle_model.md):
- zero-wait-state memory (code and data in TCM/SRAM, or flash with a perfect accelerator);
- no cache effects, no interrupts, no bus contention;
- every branch counted as taken (upper bound for conditional branches);
- Cortex-M7 dual issue is ignored: its table is the M4 table with faster FP multiply-accumulate
  and divide, so the M7 estimate is an upper bound, and poorer than M0+/M4 ones.
Cycle counts per class come from the Arm Technical Reference Manuals' instruction timing tables
(Cortex-M0+: loads/stores 2, taken branches 2, single-cycle multiplier; Cortex-M4: loads 2,
stores 1, taken branches 1 + pipeline refill of 1-3, taken here as 2, VFMA/VMLA 3, VDIV 14).
For ratios between two programs on one core expect about +-20-30 %; absolute latency on a real
board needs the cycle counter (the firmware reports it).
"""

from __future__ import annotations

from collections import Counter

# cycles per instruction of each class; "_regs" entries are added per register transferred.
from firmware_host.measure.build import TARGETS

TABLES: dict[str, dict[str, float]] = {
    "cortex-m0plus": {"alu": 1, "mul": 1, "div": 0, "load": 2, "store": 2, "mem_multi": 1, "mem_multi_regs": 1,
                      "branch": 2, "call": 3, "branch_multi": 3, "branch_multi_regs": 1,
                      "fp": 0, "fp_mac": 0, "fp_div": 0, "fp_mem": 0, "fp_mem_multi": 0, "fp_mem_multi_regs": 0},
    "cortex-m4f": {"alu": 1, "mul": 1, "div": 7, "load": 2, "store": 1, "mem_multi": 1, "mem_multi_regs": 1,
                   "branch": 3, "call": 3, "branch_multi": 3, "branch_multi_regs": 1,
                   "fp": 1, "fp_mac": 3, "fp_div": 14, "fp_mem": 2, "fp_mem_multi": 1, "fp_mem_multi_regs": 1},
    "cortex-m7": {"alu": 1, "mul": 1, "div": 7, "load": 1, "store": 1, "mem_multi": 1, "mem_multi_regs": 1,
                  "branch": 2, "call": 2, "branch_multi": 2, "branch_multi_regs": 1,
                  "fp": 1, "fp_mac": 1, "fp_div": 10, "fp_mem": 1, "fp_mem_multi": 1, "fp_mem_multi_regs": 1},
}


def estimate_cycles(target: str, mix: Counter) -> float:
    """Estimated cycles of an execution with this instruction mix on target."""
    table = TABLES[target]
    return float(sum(table.get(cls, 1) * n for cls, n in mix.items()))


def estimate_us(target: str, cycles: float) -> float:
    return cycles / TARGETS[target]["clock_mhz"]
