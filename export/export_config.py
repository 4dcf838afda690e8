"""The options of `bpd export`: read by the command line without torch or onnx (export/export.py runs it)."""

from __future__ import annotations

from dataclasses import dataclass

from bpd.config import field
from export.kernels import CHOICES as KERNEL_CHOICES
from export.kernels import FLASH_BUDGET, INT_BUDGET, INT_FLASH_RATIO
from export.package import CHOICES as PACKAGE_CHOICES
from export.parity import PARITY_TOL


@dataclass
class ExportConfig:
    source: str = field(help="run directory, student .pt or teacher .npz", positional=True)
    out: str = field("export", help="export directory")
    format: str = field("auto", help="per-layer weight storage", choices=("auto", "dense", "csr"))
    int8: bool = field(False, help="also emit int8 weights with per-row scales (in OUT/int8) and measure them")
    kernel: str = field("auto", help="C kernel: auto (the fewest estimated Cortex-M4F cycles within --flash-budget, "
                        "measured; the integer kernel only within --int-budget and keeping 99 %% of the float "
                        "kernel's return over paired batches of --episodes), the generic layer walker, compact "
                        "(straight-line code over a weight table), generated (straight-line code, weights as "
                        "literals), integer (int16 weights, SMLAD on Cortex-M4/M7, tanh by lookup), "
                        "integer-interp (the same integers, tanh interpolated: 3.5 kB less flash on Cortex-M4/M7) "
                        "or integer-table (the same integers with the weights in tables, fitted to --flash-budget)",
                        choices=KERNEL_CHOICES)
    flash_budget: int = field(FLASH_BUDGET, help="auto kernel: bytes of flash the policy may take (code and weights); "
                              "the default leaves 16 kB of a 64 kB part to the firmware; the integer-table kernel "
                              "spends what it leaves on speed")
    int_flash_ratio: float = field(INT_FLASH_RATIO, help="auto kernel: the integer kernel's forms only within this "
                                   "multiple of the generic kernel's flash (and --flash-budget): tanh by lookup in a "
                                   "4 kB table where it fits, else interpolated between 128 knots in 512 B, else the "
                                   "table form fitted to it (0: --flash-budget alone)")
    tanh_budget: float = field(PARITY_TOL, help="compact and generated kernels: max abs action error against torch "
                               "allowed to the tanh approximation (the cheapest form within it is chosen)")
    int_budget: float = field(INT_BUDGET, help="integer kernel: its largest action error against the float student "
                              "allowed, as a share of the action range (auto ships it only within this)")
    integer: bool = field(False, help="also emit an integer-only kernel (Q15, int16 weights, int32 sums) calibrated "
                          "on the dataset's observations, in OUT/int, and measure it", flag="--int")
    dataset: str | None = field(None, help="dataset for parity states (default: the run's)")
    teacher: str | None = field(None, help="teacher for the dense comparison (default: the run's)")
    parity_samples: int = field(10_000, help="observations in the parity check")
    episodes: int = field(10, help="episodes to measure the return of torch and C forms (0 to skip)")
    seed: int = field(0, help="seed for random parity states and evaluation episodes")
    package: str = field("none", help="also write OUT/package/, the export as a library for a build system: "
                         "cmake (a bpd::policy target), zephyr (a module), platformio (library.json), arduino "
                         "(library.properties, sources in src/) or all (one folder that is all four), each with "
                         "an example", choices=PACKAGE_CHOICES)
    package_name: str = field("bpd", help="--package: the name its C, CMake, Zephyr, PlatformIO and Arduino names "
                              "take in place of bpd (swing: swing_policy_run, swing_model, SWING_OBS_DIM, "
                              "swing_policy.h, swing::policy, CONFIG_SWING_POLICY), so that packages of two names "
                              "link into one firmware")
    package_url: str = field("", help="--package: the library's web page in library.json and library.properties "
                             "(an http:// or https:// address; Arduino requires one; a placeholder without it)")
