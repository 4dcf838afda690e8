"""Networks of the distillation: the Bayesian student actor and the twin critics.

Both work in normalised units: observations standardised with the dataset statistics, actions
scaled to [-1, 1]. The student file carries the statistics and bounds needed to undo that.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bpd.errors import BpdError
from training.live import cut_in_order
from training.mlp import MLPPolicy
from training.svdo import LinearSVDO

STUDENT_FORMAT = "bpd-student"
STUDENT_FORMAT_VERSION = 1
ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


class BayesianStudent(nn.Module):
    """MLP of sparse variational dropout layers, tanh-squashed output in [-1, 1]."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: list[int], activation: str = "tanh",
                 threshold: float = 3.0, log_alpha_clip: float = 10.0, init_log_sigma2: float = -10.0,
                 unit_gates: bool = False) -> None:
        super().__init__()
        widths = [obs_dim, *hidden, act_dim]
        # an nn.ModuleList of LinearSVDO (ModuleList is not generic: the annotation says what it holds); hidden
        # layers carry unit gates when asked (the action units are never pruned)
        self.layers: Sequence[LinearSVDO] = nn.ModuleList(  # type: ignore[assignment]
            LinearSVDO(i, o, threshold, log_alpha_clip, init_log_sigma2, unit_gates and k < len(hidden))
            for k, (i, o) in enumerate(zip(widths[:-1], widths[1:])))
        self.unit_gates = unit_gates
        self.act = ACTIVATIONS[activation]()
        self.activation = activation

    def forward(self, obs_norm: torch.Tensor) -> torch.Tensor:
        h = obs_norm
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < len(self.layers) - 1:
                h = self.act(h)
        return torch.tanh(h)

    @torch.no_grad()
    def frozen_forward(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """forward() in evaluation mode, each layer's deterministic weight and bias (its mask and gates applied)
        taken once: the same function while the parameters stay as they are, without the masks' logarithms at
        every call (a rollout calls it once a step)."""
        assert not self.training, "a student in training mode draws its weights at every call"
        layers = [(layer.deterministic_weight(), layer.deterministic_bias()) for layer in self.layers]

        def run(obs_norm: torch.Tensor) -> torch.Tensor:
            h = obs_norm
            for i, (w, b) in enumerate(layers):
                h = F.linear(h, w, b)
                if i < len(layers) - 1:
                    h = self.act(h)
            return torch.tanh(h)

        return run

    def kl(self) -> torch.Tensor:
        return sum((layer.kl() for layer in self.layers), torch.zeros(()))

    def weight_count(self) -> int:
        return sum(layer.theta.numel() for layer in self.layers)

    @torch.no_grad()
    def sparsity(self) -> float:
        """Fraction of weights pruned by the threshold."""
        kept = sum(layer.mask().sum().item() for layer in self.layers)
        return 1.0 - kept / self.weight_count()

    @torch.no_grad()
    def collapse(self, obs_mean: np.ndarray, obs_std: np.ndarray, action_low: np.ndarray,
                 action_high: np.ndarray) -> MLPPolicy:
        """The deterministic masked network, mapping raw observations to env actions."""
        return MLPPolicy(weights=[l.deterministic_weight().cpu().numpy().astype(np.float32) for l in self.layers],
                         biases=[l.deterministic_bias().detach().cpu().numpy().astype(np.float32) for l in self.layers],
                         activation=self.activation, output="tanh", obs_mean=np.asarray(obs_mean, np.float32),
                         obs_std=np.asarray(obs_std, np.float32), action_low=np.asarray(action_low, np.float32),
                         action_high=np.asarray(action_high, np.float32))


class NoCut(BpdError):
    """No cut of a student's mask costs at most the budget asked for (least: the least cost found, where known)."""

    def __init__(self, message: str, least: float | None = None) -> None:
        super().__init__(message)
        self.least = least


def live_units(masks: list[torch.Tensor]) -> int:
    """Hidden units with a kept weight in or out."""
    return sum(int((masks[li].any(1) | masks[li + 1].any(0)).sum()) for li in range(len(masks) - 1))


def _hidden_units(masks: list[torch.Tensor], snr: list[torch.Tensor],
                  live: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> list[tuple[float, int, int]]:
    """(signal, layer, unit) of every hidden unit live(in-mask rows, out-mask columns) says is live; signal: the
    sum of 1/alpha over its kept weights in and out."""
    units = []
    for li in range(len(masks) - 1):
        m_in, m_out = masks[li], masks[li + 1]
        sig = (snr[li] * m_in).sum(1) + (snr[li + 1] * m_out).sum(0)
        units += [(float(sig[j]), li, j) for j in torch.nonzero(live(m_in.any(1), m_out.any(0))).flatten().tolist()]
    return units


def _drop_unit(masks: list[torch.Tensor], li: int, j: int) -> None:
    masks[li][j, :] = False
    masks[li + 1][:, j] = False


def _unit_cut(student: BayesianStudent, masks: list[torch.Tensor], max_units: int,
              keep_layers: bool = False) -> list[torch.Tensor]:
    """While more hidden units than max_units are live, the one whose kept weights carry the least signal (the
    sum of 1/alpha over them) is removed with all its weights (keep_layers: never a layer's last live unit)."""
    masks = [m.clone() for m in masks]
    snr = [torch.exp(-layer.log_alpha) for layer in student.layers]
    while True:
        units = _hidden_units(masks, snr, torch.logical_or)
        if len(units) <= max_units:
            return masks
        if keep_layers:
            units = [u for u in units if sum(v[1] == u[1] for v in units) > 1]
            if not units:
                return masks
        _, li, j = min(units)
        _drop_unit(masks, li, j)


def dense_fill(masks: list[torch.Tensor]) -> list[torch.Tensor]:
    """Every weight between the units the masks leave live (a hidden unit with a kept weight in or out; every
    input and output): the dense network of those widths."""
    rows = [m.any(1) | n.any(0) for m, n in zip(masks[:-1], masks[1:])]
    ins = [torch.ones(masks[0].shape[1], dtype=torch.bool, device=masks[0].device), *rows]
    outs = [*rows, torch.ones(masks[-1].shape[0], dtype=torch.bool, device=masks[-1].device)]
    return [o[:, None] & i[None, :] for o, i in zip(outs, ins)]


@torch.no_grad()
def dense_unit_cut(student: BayesianStudent, cost: Callable[[list[np.ndarray]], float],
                   budget: float) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The cut to whole units left dense (--cut-dense). A hidden unit counts while it has a kept output weight and
    its gate is on (a unit whose inputs were all cut passes on a constant, act(bias): it stays, its inputs trained
    from zero; one with no output reaches nothing, one whose gate is off passes on act(0) = 0). While the dense
    network between the units that count (dense_fill) costs more than budget, the one whose kept weights carry
    the least signal (1/alpha summed over them) goes, with the units that lose their last output by it, but never
    the last unit of a layer (nor one whose going leaves a layer none). Returns the threshold's masks on the units
    left (the weights that keep their values) and their dense fill (every weight the fine-tune trains, those the
    threshold had cut back from zero): before any unit goes, the network computes what the threshold's does."""
    masks = [layer.mask().bool().clone() for layer in student.layers]
    snr = [torch.exp(-layer.log_alpha) for layer in student.layers]
    gates = [layer.unit_mask().bool() for layer in student.layers[:-1]]

    def settle(ms: list[torch.Tensor]) -> bool:
        """Drop the units that reach nothing; whether every hidden layer keeps one."""
        while dead := [(li, j) for li in range(len(ms) - 1)
                       for j in torch.nonzero((ms[li].any(1) | ms[li + 1].any(0))
                                              & ~(ms[li + 1].any(0) & gates[li])).flatten().tolist()]:
            for li, j in dead:
                _drop_unit(ms, li, j)
        return all(bool(n.any()) for n in ms[1:])

    if not settle(masks):
        raise NoCut("the student's mask reaches no output")
    while True:
        fill = dense_fill(masks)
        if cost([m.cpu().numpy() for m in fill]) <= budget:
            return masks, fill
        for _, li, j in sorted(_hidden_units(masks, snr, lambda i, o: o)):
            trial = [m.clone() for m in masks]
            _drop_unit(trial, li, j)
            if settle(trial):
                masks = trial
                break
        else:
            raise NoCut(f"no dense network of the student's units costs at most {budget:g} (the fewest units the cut "
                        f"can keep cost {cost([m.cpu().numpy() for m in fill]):g})")


def _weight_cut(student: BayesianStudent, masks: list[torch.Tensor], prune_to: int | None,
                cost: Callable[[list[np.ndarray]], float] | None, budget: float | None) -> list[torch.Tensor]:
    """masks cut to the most weights whose collapsed student has at most prune_to nonzero parameters, else to
    the most weights whose cost is within budget (lowest log alpha first)."""
    scores = torch.cat([torch.where(m, layer.log_alpha, torch.full_like(layer.log_alpha, float("inf"))).flatten()
                        for layer, m in zip(student.layers, masks)])
    order = torch.argsort(scores, stable=True)

    def cut(k: int) -> list[torch.Tensor]:
        flat = torch.zeros_like(scores, dtype=torch.bool)
        flat[order[:k]] = True
        out, at = [], 0
        for m in masks:
            out.append(flat[at:at + m.numel()].view_as(m))
            at += m.numel()
        return out

    kept = sum(int(m.sum()) for m in masks)
    if cost is None:
        assert prune_to is not None  # counted on the collapsed student (training/live.py)
        return [m.to(scores.device) for m in cut_in_order(order, [m.shape for m in masks], kept, prune_to)]
    assert budget is not None

    def price(ms: list[torch.Tensor]) -> float:
        return cost([m.cpu().numpy() for m in ms])

    if price(masks) <= budget:
        return masks
    # a cost may be infinite until the kept weights reach the output (no network at all): first the fewest
    # weights with a finite cost (adding a weight never breaks a path), then the largest cut within the budget
    # above them (costs grow with k but for the pairing's odd step)
    lo, hi = 0, kept
    while lo < hi:
        mid = (lo + hi) // 2
        if np.isfinite(price(cut(mid))):
            hi = mid
        else:
            lo = mid + 1
    least = lo
    if (fewest := price(cut(least))) > budget:
        raise NoCut(f"no cut of the student's mask costs at most {budget:g} (the fewest weights that reach the "
                    f"output cost {fewest:g})", fewest)
    hi = kept
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if price(cut(mid)) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return cut(lo)


@torch.no_grad()
def budget_masks(student: BayesianStudent, prune_to: int | None, max_units: int | None = None,
                 pairs: int | None = None, cost: Callable[[list[np.ndarray]], float] | None = None,
                 budget: float | None = None, unit_shares: Sequence[float] | None = None) -> list[torch.Tensor]:
    """Each layer's mask at a budget of `prune_to` nonzero parameters: the weights the threshold (and the
    unit gates) keep, cut to the most of lowest log alpha over all layers whose collapsed student has at most
    prune_to nonzero parameters, weights and biases (training/live.py; log alpha is a weight's
    noise-to-signal ratio, comparable across layers); ties broken by position. pairs (in place
    of prune_to): cut to the most weights of lowest log alpha whose multiply-adds on the DSP integer kernel
    (training/pairs.py multiply_slots: one per row and pair of columns, summed over layers) are at most
    that. cost and budget (in place of both): cut to the most weights of lowest log alpha whose masks cost
    (a function of the masks as numpy arrays, e.g. the DSP kernel's estimated cycles) at most budget; an
    error where even the fewest weights cost more. max_units: first, while more hidden units than that
    have a kept weight in or out, the one whose kept weights carry the least signal (the sum of 1/alpha
    over them) is removed with all its weights (a unit costs its activation and bias whatever its
    weights). unit_shares (with cost, in place of max_units): the units are chosen too: each share of the
    live units is cut to as above, then its weights to the budget, and the cut that keeps the most signal
    (1/alpha summed over its weights) is taken."""
    from training.pairs import network_slots

    masks = [layer.mask().bool() for layer in student.layers]
    if pairs is not None and cost is None:
        cost, budget = (lambda ms: float(network_slots(ms))), float(pairs)
    if max_units is not None:
        return _weight_cut(student, _unit_cut(student, masks, max_units), prune_to, cost, budget)
    if not unit_shares or cost is None:
        return _weight_cut(student, masks, prune_to, cost, budget)
    snr = [torch.exp(-layer.log_alpha) for layer in student.layers]
    live = live_units(masks)
    best: tuple[float, list[torch.Tensor]] | None = None
    for units in sorted({max(1, round(share * live)) for share in unit_shares}, reverse=True):
        try:
            ms = _weight_cut(student, _unit_cut(student, masks, units), None, cost, budget)
        except NoCut:
            continue
        signal = float(sum((s * m).sum() for s, m in zip(snr, ms)))
        if best is None or signal > best[0]:
            best = (signal, ms)
    if best is not None:
        return best[1]
    # no share fits: fewer units still, one a layer at the least (what distill's check of the budget counts on);
    # the most units that fit
    err: NoCut | None = None
    for units in range(min(max(1, round(share * live)) for share in unit_shares) - 1, 0, -1):
        try:
            return _weight_cut(student, _unit_cut(student, masks, units, keep_layers=True), None, cost, budget)
        except NoCut as e:
            err = e
    least = err.least if err is not None else None
    raise NoCut(f"no cut of the student's mask, down to one unit a hidden layer, costs at most {budget:g}"
                + (f" (the fewest weights that reach the output cost {least:g})" if least is not None else ""), least)


class Critic(nn.Module):
    """Twin Q networks on (normalised observation, normalised action)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: list[int]) -> None:
        super().__init__()

        def mlp() -> nn.Sequential:
            widths, mods = [obs_dim + act_dim, *hidden], []
            for i, o in zip(widths[:-1], widths[1:]):
                mods += [nn.Linear(i, o), nn.ReLU()]
            return nn.Sequential(*mods, nn.Linear(widths[-1], 1))

        self.q1, self.q2 = mlp(), mlp()

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([obs, act], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)


def has_unit_gates(state_dict: dict) -> bool:
    """Whether a student's saved parameters include unit gates."""
    return any(str(k).endswith("gate_mu") for k in state_dict)


def save_student(path: str | Path, student: BayesianStudent, meta: dict, stats: dict[str, np.ndarray]) -> None:
    """Write the student file: weights, log sigma^2, threshold, normalisation, bounds and provenance."""
    from bpd.io import atomic_write

    for k, v in student.state_dict().items():  # a diverged student is never written
        if not torch.isfinite(v).all():
            raise BpdError(f"the student for {path}: weight {k} holds NaN or Inf (training diverged)")
    for k, v in stats.items():
        if not np.isfinite(np.asarray(v, np.float64)).all():
            raise BpdError(f"the student for {path}: {k} holds NaN or Inf")
    blob = {"format": STUDENT_FORMAT, "format_version": STUDENT_FORMAT_VERSION, "meta": meta,
            "stats": {k: torch.as_tensor(np.asarray(v, np.float32)) for k, v in stats.items()},
            "state_dict": {k: v.detach().clone() for k, v in student.state_dict().items()}}
    atomic_write(path, lambda f: torch.save(blob, f))


def load_student(path: str | Path) -> tuple[BayesianStudent, dict, dict[str, np.ndarray]]:
    """Load a student file with torch's weights-only reader (no pickled code runs)."""
    path = Path(path)
    if not path.is_file():
        raise BpdError(f"{path}: no such file")
    try:
        blob = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:  # torch raises many types for corrupt archives
        raise BpdError(f"{path}: not a readable student file ({e.__class__.__name__})") from None
    if isinstance(blob, dict) and blob.get("format") == "bpd-checkpoint":
        raise BpdError(f"{path}: is a distillation checkpoint, not a student; give the run directory or its "
                       "student.pt")
    if not isinstance(blob, dict) or blob.get("format") != STUDENT_FORMAT:
        raise BpdError(f"{path}: not a bpd student file")
    try:
        meta = blob["meta"]
        if not isinstance(meta.get("env_id"), str):
            raise ValueError("no environment id recorded")
        if min([int(meta["obs_dim"]), int(meta["act_dim"]), *[int(h) for h in meta["hidden"]]]) < 1:
            raise ValueError("layer widths must be positive")
        state = blob["state_dict"]
        student = BayesianStudent(int(meta["obs_dim"]), int(meta["act_dim"]), [int(h) for h in meta["hidden"]],
                                  meta["activation"], float(meta["threshold"]), float(meta["log_alpha_clip"]),
                                  unit_gates=has_unit_gates(state))
        stats = {k: np.asarray(blob["stats"][k].numpy(), np.float32)
                 for k in ("obs_mean", "obs_std", "action_low", "action_high")}
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as e:
        raise BpdError(f"{path}: student file is incomplete or malformed ({e.__class__.__name__}: "
                       f"{str(e).splitlines()[0] if str(e) else ''})") from None
    try:
        student.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as e:
        raise BpdError(f"{path}: student weights do not match its description ({str(e).splitlines()[0]})") from None
    for k, v in state.items():
        if not torch.isfinite(v).all():
            raise BpdError(f"{path}: student weight {k} holds NaN or Inf")
    od, ad = student.layers[0].theta.shape[1], student.layers[-1].theta.shape[0]
    for k, shape in (("obs_mean", (od,)), ("obs_std", (od,)), ("action_low", (ad,)), ("action_high", (ad,))):
        if stats[k].shape != shape or not np.isfinite(stats[k]).all():
            raise BpdError(f"{path}: {k} must be {shape[0]} finite numbers")
    if (stats["obs_std"] <= 0).any() or not (stats["action_high"] > stats["action_low"]).all():
        raise BpdError(f"{path}: observation scales must be positive and action bounds ordered")
    student.eval()
    return student, meta, stats
