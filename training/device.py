"""Which torch device a training command runs on: `--device auto|cpu|cuda[:N]` of `bpd teacher train`,
`bpd distill` and `bpd baseline train`. `bpd collect` and `bpd evaluate` take none: they run a policy
as the numpy MLP it collapses to (training/mlp.py; an ONNX or C export as itself), one observation at
a time in the environment's own loop, with no torch network to place.

auto takes CUDA where torch sees a GPU and the CPU elsewhere; cuda asked for where there is none is a
one-line error, not a silent fall-back. The CPU is what the tests run; a run records the device it used
(summary.json; a teacher in its file's training record), and its files are the same in form on either:
weights are saved from the CPU. A GPU run is not bit-for-bit a CPU run (other kernels, another random
stream for the weight noise).
"""

from __future__ import annotations

import re

import torch

from bpd.errors import BpdError

CHOICES_HELP = "torch device: auto (CUDA where torch sees a GPU, else the CPU), cpu, or cuda[:N]"


def resolve_device(name: str) -> torch.device:
    """The torch device for a --device value."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    m = re.fullmatch(r"cuda(?::(\d+))?", name)
    if m is None:
        raise BpdError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        why = "no GPU found" if torch.backends.cuda.is_built() else \
            "built without CUDA, as `make` installs it: a GPU needs a CUDA build of the same torch in the venv"
        raise BpdError(f"--device {name}: CUDA is not available here (torch {torch.__version__}, {why}); "
                       "use --device cpu or auto")
    index = int(m.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise BpdError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return torch.device("cuda", index)
