"""Run checkpoints, read with torch's weights-only loader; what does not read or fit is refused in one line.

A distillation run's checkpoint holds the trainer, the batch sampler's and torch's random state, the wall time,
the fine-tune's visits and the metrics accumulated since the last periodic evaluation (so that the first row a
resumed run writes averages the same steps an uninterrupted run's does)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from bpd.errors import BpdError
from bpd.io import atomic_write


def check_finished(run: Path) -> None:
    """A run directory stopped before its end (a distillation's, a baseline's or a multi-task run's: its checkpoint.pt,
    no student.pt yet) is said to be one, with how to finish it, where a command wants the student it hands over."""
    products = ("student.pt", "policy.npz", "multitask.npz", "summary.json")  # summary.json: every run's last file
    if run.is_dir() and (run / "checkpoint.pt").is_file() and not any((run / f).is_file() for f in products):
        raise BpdError(f"{run}: a run that has not finished (a checkpoint, no student yet); the command that "
                       "started it, with --resume, finishes it")


def save_checkpoint(path: Path, trainer: Any, gen: torch.Generator, elapsed: float, visits: Any = None,
                    acc: dict[str, list[float]] | None = None) -> None:
    blob = {"format": "bpd-checkpoint", "trainer": trainer.state_dict(), "generator": gen.get_state(),
            "torch_rng": torch.get_rng_state(), "elapsed": elapsed,
            "acc": {k: [float(x) for x in v] for k, v in (acc or {}).items()}}
    if visits is not None:
        blob["visits"] = visits.state_dict()
    atomic_write(path, lambda f: torch.save(blob, f))


def restore(trainer: Any, ck: dict, path: Path) -> None:
    """Load a checkpoint into the trainer: networks of another shape or non-finite weights are refused."""
    try:
        trainer.load_state_dict(ck["trainer"])
    except (KeyError, RuntimeError, ValueError, TypeError) as e:
        raise BpdError(f"{path}: does not match this run's networks ({e.__class__.__name__}: "
                       f"{(str(e).splitlines() or [''])[0][:80]})") from None
    for net in ("actor", "critic"):
        if not all(torch.isfinite(p).all() for p in getattr(trainer, net).parameters()):
            raise BpdError(f"{path}: the {net} holds NaN or Inf")


def restored_acc(ck: dict, path: Path) -> dict[str, list[float]]:
    """The metrics accumulated since the last evaluation (none in a checkpoint written before they were kept)."""
    acc = ck.get("acc", {})
    try:
        return {str(k): [float(x) for x in v] for k, v in acc.items()}
    except (AttributeError, TypeError, ValueError):
        raise BpdError(f"{path}: corrupt checkpoint (its metrics since the last evaluation)") from None


def load_checkpoint(path: Path) -> dict:
    """A distillation run's checkpoint."""
    ck = _load(path, "")
    if ck.get("format") != "bpd-checkpoint":
        raise BpdError(f"{path}: not a bpd checkpoint")
    return ck


def read_checkpoint(path: Path) -> dict:
    """A baseline's or multi-task run's checkpoint (a dict of tensors and numbers), unpickling nothing."""
    return _load(path, "; remove the run to start over")


def _load(path: Path, hint: str) -> dict:
    """A checkpoint read with torch's weights-only loader, or one line (hint: what to do about it)."""
    try:
        ck = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:
        raise BpdError(f"{path}: unreadable checkpoint ({e.__class__.__name__}){hint}") from None
    if not isinstance(ck, dict):
        raise BpdError(f"{path}: not a bpd checkpoint{hint}")
    return ck


@contextmanager
def restoring(path: Path) -> Iterator[None]:
    """Around loading a checkpoint's contents: a missing entry or networks of another shape, one line."""
    try:
        yield
    except (KeyError, RuntimeError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise BpdError(f"{path}: does not match this run ({e.__class__.__name__}: "
                       f"{(str(e).splitlines() or [''])[0][:80]}); remove the run to start over") from None
