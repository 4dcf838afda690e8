"""One BPDTrainer.update on a fixed, hand-made batch against losses, gradients and parameter moves
computed here from the networks' parameters alone.

The references below re-derive every quantity from the model as stated in training/distill.py,
training/svdo.py and training/priors.py (local reparameterisation of N(theta, sigma^2) weights, tanh
layers, TD3 targets, TD3+BC actor loss, polyak targets, Adam's first step) with plain tensor algebra
in float64; none of the project's loss helpers is called. The only thing shared with the trainer is
the random stream: the same seed replays the noise it draws, in the order it draws it (target
smoothing noise when the critics are on, then one standard normal per pre-activation of each layer).
"""

import math

import numpy as np
import pytest
import torch

from tests.test_svdo import exact_log_uniform_kl
from training.distill import BPDTrainer, DistillConfig
from training.distill_config import PAPER
from training.live import collapsed_nonzero
from training.priors import LOG_UNIFORM_FIT_ERROR


def paper(**kw) -> DistillConfig:
    """A config for these known-answer tests: the paper's BPD (training.distill_config.PAPER, the defaults they
    were written against) with the test's options over it."""
    return DistillConfig(**({"teacher": "t", "dataset": "d"} | PAPER | kw))

OBS, ACT, HIDDEN, CRITIC_HIDDEN = 3, 2, 4, 8
N_DATA = 40  # dataset size: the KL multiplier defaults to 1 / 40
SEED = 1234

BATCH = {
    "obs": torch.tensor([[0.5, -1.0, 0.2], [1.5, 0.3, -0.7], [-0.4, 0.8, 1.1], [0.0, -0.2, -1.3], [2.0, 1.0, 0.5]]),
    "next_obs": torch.tensor([[0.6, -0.9, 0.1], [1.2, 0.5, -0.4], [-0.1, 0.6, 1.4], [0.3, -0.5, -1.0],
                              [1.7, 1.3, 0.2]]),
    "act": torch.tensor([[0.3, -0.5], [-0.9, 0.1], [0.6, 0.6], [0.0, -1.0], [1.0, 0.2]]),
    "teacher_act": torch.tensor([[0.4, -0.6], [-0.8, 0.0], [0.5, 0.7], [0.1, -0.9], [0.9, 0.3]]),
    "rew": torch.tensor([1.0, -0.5, 0.25, 2.0, 0.0]),
    "term": torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0]),  # the third transition ends its episode
}
B = len(BATCH["obs"])

# The student, by hand: weights theta, biases, and log alpha per weight (log sigma^2 = log alpha + log theta^2),
# every log alpha below the pruning threshold 3 so the deterministic network keeps every weight.
THETA1 = torch.tensor([[0.8, -0.5, 0.3], [-0.4, 0.9, 0.2], [0.6, 0.1, -0.7], [-0.2, -0.6, 0.5]])
BIAS1 = torch.tensor([0.1, -0.2, 0.05, 0.0])
LOG_ALPHA1 = torch.tensor([[-4.0, -2.0, 0.0], [-3.0, -1.0, 1.0], [-2.5, 2.0, -0.5], [0.5, -1.5, -3.5]])
THETA2 = torch.tensor([[0.7, -0.3, 0.5, -0.9], [-0.6, 0.8, 0.2, 0.4]])
BIAS2 = torch.tensor([0.05, -0.1])
LOG_ALPHA2 = torch.tensor([[-2.0, 1.5, -1.0, 0.0], [-3.0, 0.5, -0.5, 2.5]])

ETA_MAX, STEPS, RAMP = 0.8, 10, 0.5
BC_WEIGHT, ALPHA, GAMMA, TAU = 1.5, 2.5, 0.9, 0.25
ACTOR_LR, CRITIC_LR = 0.01, 0.02
POLICY_NOISE, NOISE_CLIP = 0.4, 0.5
PRIOR_SCALE = 0.5


def make_trainer(value_term: bool, prior: str = "gaussian") -> BPDTrainer:
    torch.manual_seed(0)  # the critics' initial weights
    cfg = paper(hidden=[HIDDEN], critic_hidden=[CRITIC_HIDDEN], activation="tanh",
                        steps=STEPS, eta_max=ETA_MAX, eta_schedule="linear", eta_ramp=RAMP, bc_weight=BC_WEIGHT,
                        alpha=ALPHA, gamma=GAMMA, tau=TAU, actor_lr=ACTOR_LR, critic_lr=CRITIC_LR,
                        policy_noise=POLICY_NOISE, noise_clip=NOISE_CLIP, policy_freq=2, prior=prior,
                        prior_scale=PRIOR_SCALE, value_term=value_term)
    t = BPDTrainer(cfg, OBS, ACT, N_DATA)
    with torch.no_grad():
        for layer, theta, bias, la in zip(t.actor.layers, (THETA1, THETA2), (BIAS1, BIAS2), (LOG_ALPHA1, LOG_ALPHA2)):
            layer.theta.copy_(theta)
            layer.bias.copy_(bias)
            layer.log_sigma2.copy_(la + torch.log(theta * theta))
    t.actor_target.load_state_dict(t.actor.state_dict())
    assert all((layer.log_alpha < layer.threshold).all() for layer in t.actor.layers)
    return t


def snapshot(net: torch.nn.Module | None) -> list[torch.Tensor]:
    return [p.detach().clone().double() for p in net.parameters()]


def leaf(ps: list[torch.Tensor]) -> list[torch.Tensor]:
    return [p.clone().requires_grad_(True) for p in ps]


# ----------------------------------------------------------------------------- references


def student_ref(ps: list[torch.Tensor], x: torch.Tensor, eps: list[torch.Tensor] | None) -> torch.Tensor:
    """ps = [theta1, log_sigma2_1, bias1, theta2, log_sigma2_2, bias2]. With eps, a training pass: each
    pre-activation is Gaussian with mean x theta^T + b and variance x^2 sigma^2^T (local reparameterisation),
    drawn as mean + sd * eps; without, the deterministic network. tanh after every layer."""
    h = x.double()
    for i in range(2):
        theta, log_sigma2, bias = ps[3 * i: 3 * i + 3]
        pre = h @ theta.T + bias
        if eps is not None:
            pre = pre + torch.sqrt((h * h) @ torch.exp(log_sigma2).T) * eps[i]
        h = torch.tanh(pre)
    return h


def q_ref(ps: list[torch.Tensor], s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """One critic head, ps = [W1, b1, W2, b2]: Linear, ReLU, Linear on (observation, action)."""
    x = torch.cat([s.double(), a.double()], dim=-1)
    return (torch.relu(x @ ps[0].T + ps[1]) @ ps[2].T + ps[3]).squeeze(-1)


def gaussian_kl_ref(ps: list[torch.Tensor], s: float) -> torch.Tensor:
    """sum over weights of KL(N(theta, sigma^2) || N(0, s^2)) = log(s / sigma) + (sigma^2 + theta^2) / (2 s^2) - 1/2."""
    total = 0.0
    for theta, log_sigma2 in ((ps[0], ps[1]), (ps[3], ps[4])):
        total = total + (math.log(s) - 0.5 * log_sigma2
                         + (torch.exp(log_sigma2) + theta ** 2) / (2 * s * s) - 0.5).sum()
    return total


def replay_noise(value_term: bool) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
    torch.manual_seed(SEED)
    smooth = torch.randn(B, ACT).double() if value_term else None
    return smooth, [torch.randn(B, HIDDEN).double(), torch.randn(B, ACT).double()]


def bc_ref(pi: torch.Tensor) -> torch.Tensor:
    return ((pi - BATCH["teacher_act"].double()) ** 2).mean()


def adam_first_step(before: list[torch.Tensor], grads: list[torch.Tensor], lr: float) -> list[torch.Tensor]:
    """Adam's first step from fresh moments: m_hat = g, v_hat = g^2, so each parameter moves by
    -lr * g / (|g| + 1e-8), i.e. lr against the sign of its gradient."""
    return [p - lr * g / (g.abs() + 1e-8) for p, g in zip(before, grads)]


def assert_close(got: list[torch.Tensor], want: list[torch.Tensor], rtol=1e-4, atol=1e-6):
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        torch.testing.assert_close(g.double(), w.double(), rtol=rtol, atol=atol,
                                   msg=lambda m, i=i: f"tensor {i}: {m}")


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("prior", ["gaussian", "log-uniform"])
def test_update_without_value_term(prior):
    t = make_trainer(value_term=False, prior=prior)
    t.step = 4  # an actor step (4 % policy_freq == 0) on the linear ramp: eta = 0.8 * 4 / (0.5 * 10) = 0.64
    actor0 = snapshot(t.actor)
    torch.manual_seed(SEED)
    out = t.update(BATCH)
    _, eps = replay_noise(value_term=False)

    ps = leaf(actor0)
    bc = bc_ref(student_ref(ps, BATCH["obs"], eps))
    eta, kl_weight = 0.64, 0.64 / N_DATA
    assert t.critic is None and t.step == 5
    assert set(out) == {"losses/actor", "losses/bc", "losses/kl", "eta"}  # no critic, q or lambda
    assert out["eta"] == pytest.approx(eta, rel=1e-12)
    assert out["losses/bc"] == pytest.approx(bc.item(), rel=1e-5)
    if prior == "gaussian":
        kl = gaussian_kl_ref(ps, PRIOR_SCALE)
        assert out["losses/kl"] == pytest.approx(kl.item(), rel=1e-5)
        loss = BC_WEIGHT * bc + kl_weight * kl
        assert out["losses/actor"] == pytest.approx(loss.item(), rel=1e-5)
        # the gradient the optimiser used is the gradient of that loss, for every parameter
        want = torch.autograd.grad(loss, ps)
        assert_close([p.grad for p in t.actor.parameters()], list(want))
    else:
        # 20 weights, each within the published fit's error of its exact KL
        exact = sum(exact_log_uniform_kl(x) for x in [*LOG_ALPHA1.flatten().tolist(), *LOG_ALPHA2.flatten().tolist()])
        assert abs(out["losses/kl"] - exact) <= 20 * LOG_UNIFORM_FIT_ERROR
        assert out["losses/actor"] == pytest.approx(BC_WEIGHT * bc.item() + kl_weight * out["losses/kl"], rel=1e-5)
        # biases carry no posterior: their gradient is the behaviour-cloning term's alone
        want = torch.autograd.grad(BC_WEIGHT * bc, [ps[2], ps[5]])
        assert_close([t.actor.layers[0].bias.grad, t.actor.layers[1].bias.grad], list(want))

    # Adam's first step moves each parameter by the learning rate against its gradient's sign
    grads = [p.grad.double() for p in t.actor.parameters()]
    assert all(g.abs().min() > 1e-5 for g in grads)  # every parameter is moved
    actor1 = snapshot(t.actor)
    assert_close(actor1, adam_first_step(actor0, grads, ACTOR_LR), rtol=0, atol=1e-6)
    # target network: theta' <- (1 - tau) theta' + tau theta, from a target equal to the old actor
    assert_close(snapshot(t.actor_target), [(1 - TAU) * a + TAU * b for a, b in zip(actor0, actor1)], rtol=0, atol=1e-6)


def test_update_with_value_term():
    t = make_trainer(value_term=True)
    t.step = 4
    actor0, critic0, critic_target0 = snapshot(t.actor), snapshot(t.critic), snapshot(t.critic_target)
    assert_close(critic_target0, critic0, rtol=0, atol=0)  # the targets start as copies
    torch.manual_seed(SEED)
    out = t.update(BATCH)
    smooth, eps = replay_noise(value_term=True)
    s, a, s2 = BATCH["obs"], BATCH["act"], BATCH["next_obs"]
    r, done = BATCH["rew"].double(), BATCH["term"].double()

    # critics: TD3 target from the target actor (deterministic) with clipped smoothing noise, and the twin minimum
    a2 = (student_ref(actor0, s2, None) + (POLICY_NOISE * smooth).clamp(-NOISE_CLIP, NOISE_CLIP)).clamp(-1, 1)
    y = r + (1 - done) * GAMMA * torch.minimum(q_ref(critic_target0[:4], s2, a2), q_ref(critic_target0[4:], s2, a2))
    assert y[2].item() == pytest.approx(0.25)  # terminal transition: its reward only
    cp = leaf(critic0)
    critic_loss = ((q_ref(cp[:4], s, a) - y) ** 2).mean() + ((q_ref(cp[4:], s, a) - y) ** 2).mean()
    assert out["losses/critic"] == pytest.approx(critic_loss.item(), rel=1e-5)
    critic1 = adam_first_step(critic0, list(torch.autograd.grad(critic_loss, cp)), CRITIC_LR)
    assert_close(snapshot(t.critic), critic1, rtol=0, atol=1e-6)  # both heads stepped; the actor step leaves them

    # actor: -lambda mean Q1(s, pi(s)) with lambda = alpha / mean|Q1| (no gradient through lambda), on the
    # critic as it stands after its own step, + BC + eta kl_scale KL
    ps = leaf(actor0)
    pi = student_ref(ps, s, eps)
    q = q_ref(critic1[:4], s, pi)
    lam = ALPHA / q.detach().abs().mean()
    bc, kl = bc_ref(pi), gaussian_kl_ref(ps, PRIOR_SCALE)
    value = -lam * q.mean()
    loss = value + BC_WEIGHT * bc + 0.64 / N_DATA * kl
    assert set(out) == {"losses/critic", "losses/actor", "losses/bc", "losses/kl", "losses/q", "lambda", "eta"}
    for key, want in (("losses/q", q.mean()), ("lambda", lam), ("losses/bc", bc), ("losses/kl", kl),
                      ("losses/actor", loss)):
        assert out[key] == pytest.approx(want.item(), rel=1e-5), key
    want = list(torch.autograd.grad(loss, ps, retain_graph=True))
    assert_close([p.grad for p in t.actor.parameters()], want)
    # the value term matters: without it the gradient would be visibly different
    no_value = torch.autograd.grad(BC_WEIGHT * bc + 0.64 / N_DATA * kl, ps)
    assert max((w - n).abs().max().item() for w, n in zip(want, no_value)) > 1e-2
    actor1 = adam_first_step(actor0, [p.grad.double() for p in t.actor.parameters()], ACTOR_LR)
    assert_close(snapshot(t.actor), actor1, rtol=0, atol=1e-6)

    # both target networks follow by polyak averaging with tau
    assert_close(snapshot(t.actor_target), [(1 - TAU) * a + TAU * b for a, b in zip(actor0, actor1)], rtol=0, atol=1e-6)
    assert_close(snapshot(t.critic_target), [(1 - TAU) * a + TAU * b for a, b in zip(critic_target0, critic1)],
                 rtol=0, atol=1e-6)


def test_critic_only_step_leaves_actor_and_targets():
    # policy_freq 2: on an odd step only the critics learn; the actor and both targets wait (delayed updates)
    t = make_trainer(value_term=True)
    t.step = 1
    actor0, critic0 = snapshot(t.actor), snapshot(t.critic)
    targets0 = snapshot(t.actor_target) + snapshot(t.critic_target)
    torch.manual_seed(SEED)
    out = t.update(BATCH)
    assert set(out) == {"losses/critic"} and t.step == 2
    assert_close(snapshot(t.actor), actor0, rtol=0, atol=0)
    assert all(p.grad is None for p in t.actor.parameters())
    assert_close(snapshot(t.actor_target) + snapshot(t.critic_target), targets0, rtol=0, atol=0)
    assert all((a - b).abs().max() > 0.5 * CRITIC_LR for a, b in zip(snapshot(t.critic), critic0))


def test_first_step_lowers_the_bc_loss():
    # step 0 of the linear schedule: eta = 0, so the actor loss is the behaviour-cloning term alone, and one
    # step lowers it (same batch, same noise draw)
    t = make_trainer(value_term=False, prior="log-uniform")
    actor0 = snapshot(t.actor)
    torch.manual_seed(SEED)
    out = t.update(BATCH)
    _, eps = replay_noise(value_term=False)
    bc0 = bc_ref(student_ref(actor0, BATCH["obs"], eps)).item()
    bc1 = bc_ref(student_ref(snapshot(t.actor), BATCH["obs"], eps)).item()
    assert out["eta"] == 0.0
    assert out["losses/actor"] == pytest.approx(BC_WEIGHT * bc0, rel=1e-5)
    assert bc1 < bc0 - 1e-3, (bc0, bc1)
    # the deterministic student (what is exported) moves towards the teacher on this batch too
    det0 = bc_ref(student_ref(actor0, BATCH["obs"], None)).item()
    det1 = bc_ref(student_ref(snapshot(t.actor), BATCH["obs"], None)).item()
    assert det1 < det0, (det0, det1)


def test_finetune_phase_freezes_the_mask_and_trains_the_deterministic_student():
    """With --finetune 0.5 of 10 steps: from step 5 the pruned weights are zero and stay pruned, log sigma^2
    stops moving, the forward pass in training mode is the deterministic masked network (no noise: two
    calls agree), the sparsity term is zero, and the kept weights still learn. A state dict taken in the
    phase restores it (the flags are re-applied on load)."""
    torch.manual_seed(0)
    cfg = paper(hidden=[HIDDEN], critic_hidden=[CRITIC_HIDDEN], steps=10,
                        policy_freq=1, finetune=0.5)
    t = BPDTrainer(cfg, OBS, ACT, N_DATA)
    with torch.no_grad():  # one weight per layer far above the pruning threshold
        for layer in t.actor.layers:
            layer.log_sigma2[0, 0] = torch.log(layer.theta[0, 0] ** 2) + 8.0
    for _ in range(5):
        t.update(BATCH)
    assert not t.actor.layers[0].deterministic and t.finetuning()
    masks = [layer.mask().clone() for layer in t.actor.layers]
    logs = t.update(BATCH)  # step 5: enters the phase
    assert t.actor.layers[0].deterministic and logs.get("losses/kl") is None
    sig = [layer.log_sigma2.clone() for layer in t.actor.layers]
    theta = [layer.theta.clone() for layer in t.actor.layers]
    for _ in range(3):
        t.update(BATCH)
    for layer, m, s0, th in zip(t.actor.layers, masks, sig, theta):
        assert torch.equal(layer.mask(), m) and torch.equal(layer.log_sigma2, s0)
        assert (layer.theta[m == 0] == 0).all() and not torch.equal(layer.theta, th)
    t.actor.train()
    assert torch.equal(t.actor(BATCH["obs"]), t.actor(BATCH["obs"]))
    t.actor.eval()
    t2 = BPDTrainer(cfg, OBS, ACT, N_DATA)
    t2.load_state_dict(t.state_dict())
    assert t2.actor.layers[0].deterministic and not t2.actor.layers[1].log_sigma2.requires_grad


def test_finetune_with_pair_partners_trains_the_partners_of_the_kept_weights():
    """--pair-partners: at the phase's start each layer's mask is closed under its column pairs (every pair a
    row uses is kept whole), the partners start at zero (the network's function is unchanged by the freeze)
    and then learn; a state dict taken in the phase restores the same mask."""
    from training.pairs import with_partners

    torch.manual_seed(0)
    cfg = paper(hidden=[HIDDEN], critic_hidden=[CRITIC_HIDDEN], steps=10,
                        policy_freq=1, finetune=0.5, pair_partners=True)
    t = BPDTrainer(cfg, OBS, ACT, N_DATA)
    with torch.no_grad():  # half of the weights far above the pruning threshold
        for layer in t.actor.layers:
            prune = torch.rand_like(layer.theta) < 0.5
            layer.log_sigma2[prune] = torch.log(layer.theta[prune] ** 2) + 8.0
    for _ in range(5):
        t.update(BATCH)
    before = [layer.mask().bool().numpy() for layer in t.actor.layers]
    t.actor.eval()
    out0 = t.actor(BATCH["obs"]).detach()
    t.freeze()
    assert torch.allclose(t.actor(BATCH["obs"]), out0, atol=1e-6)
    after = [layer.mask().bool().numpy() for layer in t.actor.layers]
    assert sum(a.sum() for a in after) > sum(b.sum() for b in before)
    for b, a in zip(before, after):
        assert (a == with_partners(b)).all() and (a >= b).all()
    added = [torch.as_tensor(a & ~b) for b, a in zip(before, after)]
    assert all((layer.theta[m] == 0).all() for layer, m in zip(t.actor.layers, added))
    for _ in range(4):
        t.update(BATCH)
    assert any((layer.theta[m] != 0).any() for layer, m in zip(t.actor.layers, added))
    t2 = BPDTrainer(cfg, OBS, ACT, N_DATA)
    t2.load_state_dict(t.state_dict())
    assert all(torch.equal(x.mask(), y.mask()) for x, y in zip(t.actor.layers, t2.actor.layers))


def test_distill_defaults_to_the_pair_partner_finetune_and_the_partners_apply_only_where_they_can():
    """Without flags, distill trains the pair-partner fine-tune (unit gates, the last fifth on the frozen
    mask, the partners filled); the partners need the Bayesian student, a fine-tune and no --prune-to (a
    nonzero budget they would break), and are simply not filled otherwise."""
    from training.distill_config import pair_partners_apply

    d = DistillConfig(teacher="t", dataset="d")
    assert d.unit_gates and d.finetune == 0.2 and pair_partners_apply(d)
    assert not pair_partners_apply(paper())
    assert not pair_partners_apply(paper(pair_partners=True))  # no fine-tune
    assert not pair_partners_apply(DistillConfig(teacher="t", dataset="d", prune_to=100))
    assert not pair_partners_apply(DistillConfig(teacher="t", dataset="d", student="l1"))
    assert pair_partners_apply(paper(pair_partners=True, finetune=0.1))


def test_student_select_judges_a_run_by_the_cost_it_chose_by():
    """`bpd student select` without --cost: a run that filled the pair partners (distill's default) chose by
    the DSP kernel's multiply-adds, any other by nonzero parameters; a config.json older than the options
    reads as the paper's BPD."""
    from training.selection import run_cost

    assert run_cost({"seed": 0, "pair_partners": True, "finetune": 0.2, "student": "bayesian"}) == "smlad"
    assert run_cost({"seed": 0}) == "nonzero"  # predates the options: the paper's BPD
    assert run_cost({"pair_partners": True, "finetune": 0.2, "student": "l1"}) == "nonzero"
    assert run_cost({"pair_partners": True, "finetune": 0.2, "prune_to": 100}) == "nonzero"
    assert run_cost({"pair_partners": True, "finetune": 0.0}) == "nonzero"


@pytest.mark.parametrize("partners", [False, True])
def test_a_state_dict_taken_in_the_finetune_resumes_the_same_run(partners):
    """Loading a state dict taken in the fine-tune sets the frozen flags and changes no parameter: the
    target (mid-way between its mask and the actor's) is not frozen again, so the resumed trainer goes
    on bit for bit as the uninterrupted one."""
    import copy

    def trainer():
        cfg = paper(hidden=[8, 8], critic_hidden=[8], steps=400, policy_freq=1,
                            finetune=0.5, pair_partners=partners, unit_gates=True)
        return BPDTrainer(cfg, OBS, ACT, N_DATA)

    torch.manual_seed(0)
    t = trainer()
    with torch.no_grad():
        for layer in t.actor.layers:
            prune = torch.rand_like(layer.theta) < 0.5
            layer.log_sigma2[prune] = torch.log(layer.theta[prune] ** 2) + 8.0
    for _ in range(210):  # ten steps into the fine-tune
        t.update(BATCH)
    sd = copy.deepcopy(t.state_dict())
    t2 = trainer()
    t2.load_state_dict(copy.deepcopy(sd))
    assert t2.actor.layers[0].deterministic and not t2.actor_target.layers[0].log_sigma2.requires_grad
    for part in ("actor", "actor_target"):
        assert all(torch.equal(v, t2.state_dict()[part][k]) for k, v in sd[part].items()), part
    for tr in (t, t2):
        torch.manual_seed(1)
        for _ in range(190):
            tr.update(BATCH)
    assert all(torch.equal(a, b) for a, b in zip(t.actor.state_dict().values(), t2.actor.state_dict().values()))


def test_prune_to_cuts_the_mask_at_the_finetune_start_to_the_lowest_log_alphas():
    """--prune-to on the Bayesian student: at the fine-tune's start the mask keeps, of the weights the
    threshold keeps, the most of lowest log alpha over all layers whose collapsed student has at most prune_to
    nonzero parameters. Hand-set log alphas: layer 1 (4x3) LOG_ALPHA1 with one weight above the threshold,
    layer 2 (2x4) its own; budget 11 = 2 output biases + 9. In order of log alpha the collapsed count (live
    weights + live hidden units + 2) runs: -3.8 L2[0,0], -3.6 L2[1,0], -3.5 L1[3,2], -3.2 L2[1,1]: 2 (no path);
    -3.0 L1[1,0]: unit 1 joins, 5; -2.5 L1[2,0]: 5 (unit 2 has no way out); -2.0 L1[0,1]: unit 0 joins with
    its two outputs, 9; -1.5 L1[3,1]: 9; -1.0 L1[1,1]: 10; -0.5 L1[2,2]: 10; -0.1 L2[1,3]: unit 3 joins with its
    two inputs, 14, past the budget. The prefix stops at 10; the next in order that fits, 0.0 L1[0,2] (before
    L2[0,1] by position), makes 11."""
    from training.student import budget_masks

    torch.manual_seed(0)
    cfg = paper(hidden=[HIDDEN], critic_hidden=[CRITIC_HIDDEN], steps=10,
                        policy_freq=1, finetune=0.5, prune_to=11)
    t = BPDTrainer(cfg, OBS, ACT, N_DATA)
    la1 = LOG_ALPHA1.clone()
    la1[0, 0] = 5.0  # above the threshold 3: pruned whatever the budget (it would be the lowest otherwise)
    la2 = torch.tensor([[-3.8, 0.0, 1.0, 2.0], [-3.6, -3.2, 2.5, -0.1]])
    with torch.no_grad():
        for layer, la in zip(t.actor.layers, (la1, la2)):
            layer.log_sigma2.copy_(la + torch.log(layer.theta ** 2))
    want1 = torch.zeros(4, 3, dtype=torch.bool)
    for r, c in [(0, 1), (0, 2), (1, 0), (1, 1), (2, 0), (2, 2), (3, 1), (3, 2)]:
        want1[r, c] = True  # units 2 and 3 keep their inputs, dead (no way out): the collapse drops them free
    want2 = torch.zeros(2, 4, dtype=torch.bool)
    want2[0, 0] = want2[1, 0] = want2[1, 1] = True
    got = budget_masks(t.actor, cfg.prune_to)
    assert torch.equal(got[0], want1) and torch.equal(got[1], want2)
    t.freeze()
    for layer, want in zip(t.actor.layers, (want1, want2)):
        assert torch.equal(layer.mask().bool(), want) and (layer.theta[~want] == 0).all()
    assert all(torch.equal(x.mask(), y.mask()) for x, y in zip(t.actor.layers, t.actor_target.layers))
    from training.live import collapsed_nonzero
    assert collapsed_nonzero(got) == 11
    big = budget_masks(t.actor, 6 + 100)  # a budget above what the threshold keeps changes nothing
    assert all(torch.equal(b, layer.mask().bool()) for b, layer in zip(big, t.actor.layers))


def test_prune_to_on_the_bayesian_student_needs_the_finetune():
    from bpd.errors import BpdError
    from training.distill import _check_config

    with pytest.raises(BpdError, match="--finetune"):
        _check_config(paper(prune_to=100))
    _check_config(paper(prune_to=100, finetune=0.2, pair_partners=True))  # the partners are then not filled


def test_a_fine_tune_of_the_whole_schedule_is_refused():
    """--finetune 1 froze the Bayesian student's mask at the schedule's first step, before any KL: a dense student
    trained without noise, under the name of a distillation. The deterministic students have no fine-tune to refuse."""
    from bpd.errors import BpdError
    from training.distill import _check_config

    with pytest.raises(BpdError, match="--finetune must be below 1"):
        _check_config(paper(finetune=1.0))
    _check_config(paper(finetune=0.99))
    _check_config(paper(finetune=1.0, student="l1"))


def test_max_units_removes_the_hidden_unit_of_least_signal_first():
    """--max-units with --prune-to: while more hidden units live than the cap, the one whose kept weights carry the
    least signal (sum of 1/alpha in and out) goes with all its weights; then the weight budget applies. Hand-set
    log alphas: hidden unit 2's weights at 2.5 (signal 5 e^-2.5 = 0.41), every other weight at or below 0 (each
    unit's signal at least 5): a cap of 3 removes unit 2 alone; a budget above what is left changes nothing."""
    from training.student import budget_masks

    torch.manual_seed(0)
    cfg = paper(hidden=[HIDDEN], critic_hidden=[CRITIC_HIDDEN], steps=10,
                        policy_freq=1, finetune=0.5, prune_to=26, max_units=3)
    t = BPDTrainer(cfg, OBS, ACT, N_DATA)
    la1 = -LOG_ALPHA1.abs()
    la1[2, :] = 2.5
    la2 = torch.tensor([[-1.0, -0.5, 2.5, 0.0], [-2.0, -1.5, 2.5, -0.3]])
    with torch.no_grad():
        for layer, la in zip(t.actor.layers, (la1, la2)):
            layer.log_sigma2.copy_(la + torch.log(layer.theta ** 2))
    got = budget_masks(t.actor, 26, 3)
    want1, want2 = torch.ones(4, 3, dtype=torch.bool), torch.ones(2, 4, dtype=torch.bool)
    want1[2, :] = False
    want2[:, 2] = False
    assert torch.equal(got[0], want1) and torch.equal(got[1], want2)
    assert all(torch.equal(g, layer.mask().bool()) for g, layer in zip(budget_masks(t.actor, 26, 4), t.actor.layers))
    # then a budget of 10 in the collapsed count, lowest log alpha first among units 0, 1, 3: L1[0,0] -4,
    # L1[3,2] -3.5, L1[1,0] -3, L1[0,1] -2 (no unit has an output yet: 2, the output biases), L2[1,0] -2
    # (unit 0 joins: 3 weights, its bias: 6), L1[3,1] -1.5 (6), L2[1,1] -1.5 (unit 1 joins: 9), then one of the
    # three at -1 (L1[1,1], L1[1,2], L2[0,0]; rounding orders them) makes 10, a second 11. Unit 3's two weights
    # stay in the mask, dropped by the collapse.
    cut = budget_masks(t.actor, 10, 3)
    assert collapsed_nonzero(cut) == 10
    kept = {(0, *ij) for ij in cut[0].nonzero().tolist()} | {(1, *ij) for ij in cut[1].nonzero().tolist()}
    first = {(0, 0, 0), (0, 3, 2), (0, 1, 0), (0, 0, 1), (1, 1, 0), (0, 3, 1), (1, 1, 1)}
    assert first <= kept and len(kept - first) == 1 and (kept - first) < {(0, 1, 1), (0, 1, 2), (1, 0, 0)}
    t.freeze()
    assert torch.equal(t.actor.layers[0].mask().bool(), want1)


def test_multiply_slots_counts_one_smlad_per_row_and_pair_of_columns():
    """Columns 0 and 1 share row 0, so they pair; column 2 is alone, column 3 empty (left out): rows 0 and 1
    have a weight in the pair (2 SMLADs), row 2 in column 2 (1)."""
    from training.pairs import multiply_slots

    w = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0]])
    assert multiply_slots(w) == 3
    assert multiply_slots(np.zeros((3, 4))) == 0


@pytest.mark.parametrize("pairs, k", [(2, 4), (3, 5), (4, 6)])
def test_prune_to_pairs_keeps_the_most_lowest_log_alphas_within_the_dsp_multiply_adds(pairs, k):
    """--prune-to-pairs: the cut keeps the k weights of lowest log alpha, k the largest whose SMLAD count
    (summed over layers) is within the budget. Hand-set log alphas, every weight under the threshold, five
    far below the rest: L1[0,0] -4.0, L1[0,1] -3.9, L2[0,0] -3.8, L2[0,1] -3.7, L2[1,0] -3.6, then L1[0,2]
    2.0, the rest 2.9. SMLADs by k: 1, 1, 2, 2, 3, 4 (L1 row 0: pair (0, 1) and column 2
    alone), 5. With the partners the frozen layer 2 fills its pair (0, 1) in row 1: one weight more, the
    same SMLADs."""
    from training.pairs import multiply_slots
    from training.student import budget_masks

    torch.manual_seed(0)
    cfg = paper(hidden=[HIDDEN], critic_hidden=[CRITIC_HIDDEN], steps=10,
                        policy_freq=1, finetune=0.5, prune_to_pairs=pairs, pair_partners=True)
    t = _hand_set_log_alphas(BPDTrainer(cfg, OBS, ACT, N_DATA))
    order = [(0, 0, 0), (0, 0, 1), (1, 0, 0), (1, 0, 1), (1, 1, 0), (0, 0, 2)]
    want = [torch.zeros(4, 3, dtype=torch.bool), torch.zeros(2, 4, dtype=torch.bool)]
    for li, r, col in order[:k]:
        want[li][r, col] = True
    got = budget_masks(t.actor, None, None, pairs)
    assert all(torch.equal(g, w) for g, w in zip(got, want))
    assert sum(multiply_slots(g.numpy()) for g in got) == pairs
    t.freeze()
    frozen = [layer.mask().bool() for layer in t.actor.layers]
    if k >= 5:
        want[1][1, 1] = True  # the partner of L2[1,0] in the pair (0, 1)
    assert all(torch.equal(f, w) for f, w in zip(frozen, want))
    assert sum(multiply_slots(f.numpy()) for f in frozen) == pairs


def test_prune_to_pairs_needs_the_finetune_and_not_prune_to():
    from bpd.errors import BpdError
    from training.distill import _check_config

    with pytest.raises(BpdError, match="--finetune above 0"):
        _check_config(paper(prune_to_pairs=10))
    with pytest.raises(BpdError, match="not --prune-to"):
        _check_config(paper(prune_to_pairs=10, prune_to=100, finetune=0.2))
    _check_config(paper(prune_to_pairs=10, finetune=0.2, pair_partners=True,
                                max_units=5))


def _hand_set_log_alphas(t: BPDTrainer) -> BPDTrainer:
    """The --prune-to-pairs tests' log alphas: L1[0,0] -4.0, L1[0,1] -3.9, L2[0,0] -3.8, L2[0,1] -3.7, L2[1,0]
    -3.6, L1[0,2] 2.0, every other weight 2.9."""
    la1 = torch.full((4, 3), 2.9)
    la1[0, 0], la1[0, 1], la1[0, 2] = -4.0, -3.9, 2.0
    la2 = torch.full((2, 4), 2.9)
    la2[0, 0], la2[0, 1], la2[1, 0] = -3.8, -3.7, -3.6
    with torch.no_grad():
        for layer, la in zip(t.actor.layers, (la1, la2)):
            layer.log_sigma2.copy_(la + torch.log(layer.theta ** 2))
    return t


@pytest.mark.parametrize("partners, fraction", [(True, 0.34), (False, 0.25)])
def test_prune_fraction_keeps_a_share_of_the_masks_cost(partners, fraction):
    """--prune-fraction: the budget is a share of what the mask costs at the fine-tune's start. The hand-set
    log alphas of the --prune-to-pairs test, every weight kept (12 + 8): with the partners, its SMLADs are
    4 rows x 2 + 2 rows x 2 = 12, and 0.34 of them is 4 (the k = 6 cut and its partner); without, 0.25 of
    the collapsed student's 26 parameters (20 weights, 4 + 2 biases) is 6: the four lowest log alphas L1[0,0],
    L1[0,1], L2[0,0], L2[0,1] make unit 0 live (3 weights, its bias and the 2 output biases; unit 1 has no input,
    its output weight folded by the collapse), and the fifth, L2[1,0], would make 7."""
    from training.pairs import multiply_slots

    torch.manual_seed(0)
    cfg = paper(hidden=[HIDDEN], critic_hidden=[CRITIC_HIDDEN], steps=10,
                        policy_freq=1, finetune=0.5, prune_fraction=fraction, pair_partners=partners)
    t = _hand_set_log_alphas(BPDTrainer(cfg, OBS, ACT, N_DATA))
    assert sum(multiply_slots(layer.mask().bool().numpy()) for layer in t.actor.layers) == 12
    t.freeze()
    want1 = torch.zeros(4, 3, dtype=torch.bool)
    want1[0, :2] = True
    want2 = torch.zeros(2, 4, dtype=torch.bool)
    want2[0, 0] = want2[0, 1] = True
    if partners:
        want1[0, 2] = want2[1, 1] = True
        want2[1, 0] = True
    frozen = [layer.mask().bool() for layer in t.actor.layers]
    assert torch.equal(frozen[0], want1) and torch.equal(frozen[1], want2)


def test_prune_fraction_is_checked_in_one_line():
    from bpd.errors import BpdError
    from training.distill import _check_config

    for bad in ({"prune_fraction": 0.5}, {"prune_fraction": 1.5, "finetune": 0.2},
                {"prune_fraction": 0.5, "finetune": 0.2, "prune_to_pairs": 10}):
        with pytest.raises(BpdError, match="--prune-fraction"):
            _check_config(paper(**bad))


def test_gated_schedule_advances_the_ramp_while_the_gate_is_open_and_goes_back_while_shut():
    """--eta-schedule gated: the linear ramp's progress is a count of steps, +1 a step with the gate open,
    -1 with it shut, within [0, ramp * steps]; eta = eta_max * progress / (ramp * steps). steps 100, ramp
    0.5 (top 50), eta_max 2: shut for 5 steps (stays 0), open 10 (10: eta 0.4), shut 4 (6: 0.24), open 60
    (top 50: 2.0). The progress and the gate are in the state dict, so a resumed run goes on from them."""
    torch.manual_seed(0)
    cfg = paper(hidden=[HIDDEN], critic_hidden=[CRITIC_HIDDEN], steps=100,
                        policy_freq=1, eta_schedule="gated", eta_ramp=0.5, eta_max=2.0)
    t = BPDTrainer(cfg, OBS, ACT, N_DATA)
    assert not t.gate_open and t.eta() == 0.0
    for gate, n, want in ((False, 5, 0.0), (True, 10, 0.4), (False, 4, 0.24), (True, 60, 2.0)):
        t.gate_open = gate
        for _ in range(n):
            t.update(BATCH)
        assert t.eta() == pytest.approx(want), (gate, n)
    t2 = BPDTrainer(cfg, OBS, ACT, N_DATA)
    t2.load_state_dict(t.state_dict())
    assert t2.kl_progress == 50.0 and t2.gate_open and t2.eta() == pytest.approx(2.0)


def test_kl_warmup_holds_the_schedule_until_released():
    """--kl-warmup gate: while warming, the schedule's step stays 0 (no KL, no fine-tune) and the run's end moves
    with the step; once released at step S, the schedule runs on step - S and the run ends at S + --steps.
    steps 100, ramp 0.5, eta_max 2: warm 30 steps (eta 0, end 131), released, 25 more (t 25: eta 1.0, end 130);
    the warm-up is in the state dict."""
    torch.manual_seed(0)
    cfg = paper(hidden=[HIDDEN], critic_hidden=[CRITIC_HIDDEN], steps=100, policy_freq=1, eta_ramp=0.5,
                eta_max=2.0, kl_warmup="gate", finetune=0.2)
    t = BPDTrainer(cfg, OBS, ACT, N_DATA)
    for _ in range(30):
        t.update(BATCH)
    assert t.warming and t.t == 0 and t.eta() == 0.0 and t.end() == 131 and not t.selectable()
    t.warming = False
    for _ in range(25):
        t.update(BATCH)
    assert t.offset == 30 and t.t == 25 and t.eta() == pytest.approx(1.0) and t.end() == 130
    assert not t.finetuning() and t.selectable()
    t2 = BPDTrainer(cfg, OBS, ACT, N_DATA)
    t2.load_state_dict(t.state_dict())
    assert not t2.warming and t2.offset == 30 and t2.t == 25


def test_kl_warmup_holds_schedules_whose_step_zero_has_a_kl_or_a_fine_tune():
    """The constant schedule's KL weight is eta_max at its step 0, a ramp of 0 too, and a fine-tune of the whole
    schedule (finetune 1.0: the trainer's own case, which the command line refuses) fine-tunes from step 0: while
    warming none of them applies (eta 0, logged 0, no freeze); once released they do, and the student at the release
    (schedule step 0, no KL yet) is not a candidate until the schedule has run a step."""
    for kw, released in (({"eta_schedule": "constant"}, 2.0), ({"eta_ramp": 0.0}, 2.0),
                         ({"eta_schedule": "gated", "eta_ramp": 0.0}, 2.0)):
        torch.manual_seed(0)
        t = BPDTrainer(paper(hidden=[HIDDEN], critic_hidden=[CRITIC_HIDDEN], steps=100, policy_freq=1, eta_max=2.0,
                             kl_warmup="gate", **kw), OBS, ACT, N_DATA)
        logged = [t.update(BATCH)["eta"] for _ in range(5)]
        assert t.warming and t.eta() == 0.0 and logged == [0.0] * 5, kw
        t.warming = False
        assert t.eta() == released and not t.selectable(), kw
        t.update(BATCH)
        assert t.selectable(), kw
    torch.manual_seed(0)
    t = BPDTrainer(paper(hidden=[HIDDEN], critic_hidden=[CRITIC_HIDDEN], steps=100, policy_freq=1, kl_warmup="gate",
                         finetune=1.0), OBS, ACT, N_DATA)
    for _ in range(5):
        t.update(BATCH)
    assert not t.finetuning() and not t.actor.layers[0].deterministic
    t.warming = False
    t.update(BATCH)
    assert t.finetuning() and t.actor.layers[0].deterministic


def test_gated_schedule_needs_the_bayesian_student():
    """--eta-schedule gated on a student without a KL is refused; --kl-warmup gate (the default) is a no-op there:
    the deterministic students begin their schedule at step 0."""
    from bpd.errors import BpdError
    from training.distill import _check_config
    from training.distill_config import DistillConfig, warmup_applies

    with pytest.raises(BpdError, match="gated"):
        _check_config(paper(eta_schedule="gated", student="l1"))
    _check_config(paper(kl_warmup="gate", student="l1"))
    assert DistillConfig(teacher="", dataset="").kl_warmup == "gate"
    assert not warmup_applies(paper(kl_warmup="gate", student="l1"))
    assert warmup_applies(paper(kl_warmup="gate")) and not warmup_applies(paper())


def test_finetune_anneal_takes_the_actor_learning_rate_to_zero_on_a_half_cosine():
    """--finetune-anneal: --actor-lr until the fine-tune, then lr * (1 + cos(pi * k / K)) / 2 at its k-th of K
    steps (the critic's unchanged); without it, --actor-lr throughout. Bad use is one line."""
    from bpd.errors import BpdError
    from training.distill_config import _check_config

    for anneal in (True, False):
        torch.manual_seed(0)
        cfg = paper(hidden=[HIDDEN], critic_hidden=[CRITIC_HIDDEN], steps=10, policy_freq=1, actor_lr=ACTOR_LR,
                    critic_lr=CRITIC_LR, finetune=0.4, finetune_anneal=anneal)
        t = BPDTrainer(cfg, OBS, ACT, N_DATA)
        lrs = []
        for _ in range(10):
            t.update(BATCH)
            lrs.append(t.actor_opt.param_groups[0]["lr"])
        want = [ACTOR_LR] * 6 + [ACTOR_LR * (1 + math.cos(math.pi * k / 4)) / 2 if anneal else ACTOR_LR
                                 for k in range(4)]
        assert lrs == pytest.approx(want, rel=1e-12)
        assert t.critic_opt.param_groups[0]["lr"] == CRITIC_LR
    with pytest.raises(BpdError, match="--finetune-anneal anneals the Bayesian student's fine-tune"):
        _check_config(DistillConfig(teacher="t", dataset="d", finetune=0.0, finetune_anneal=True))


def test_finetune_ema_keeps_an_average_of_the_fine_tunes_actor_from_the_cut_on():
    """--finetune-ema e: the student the run evaluates is the actor until the fine-tune; from the cut on it is
    an average that starts at the cut actor and moves e of the way to the actor after each actor update
    (avg_k = (1 - e) avg_(k-1) + e actor_k, computed here from the actor's parameters step by step), on the
    same mask; it is saved and restored with the trainer. Bad use is one line."""
    from bpd.errors import BpdError
    from training.distill_config import _check_config

    e = 0.3
    torch.manual_seed(0)
    cfg = paper(hidden=[HIDDEN], critic_hidden=[CRITIC_HIDDEN], steps=10, policy_freq=1, finetune=0.4,
                finetune_ema=e)
    t = BPDTrainer(cfg, OBS, ACT, N_DATA)
    want = None
    for i in range(10):
        t.update(BATCH)
        if not t.actor.layers[0].deterministic:  # the cut is made by the first update of the fine-tune
            assert t.student() is t.actor
            continue
        assert t.student() is t.actor_avg
        actor = {k: v.detach().clone() for k, v in t.actor.named_parameters()}
        if want is None:  # the cut's step: the recurrence runs from the average it left
            want = {k: v.detach().clone() for k, v in t.actor_avg.named_parameters()}
            continue
        want = {k: (1 - e) * want[k] + e * actor[k] for k in want}
        for k, v in t.actor_avg.named_parameters():
            assert torch.allclose(v, want[k], atol=1e-7), (i, k)
    for a, b in zip(t.actor.layers, t.actor_avg.layers):
        assert b.deterministic and torch.equal(a.mask(), b.mask())
    assert not torch.allclose(t.actor.layers[0].theta, t.actor_avg.layers[0].theta)
    t2 = BPDTrainer(cfg, OBS, ACT, N_DATA)
    t2.load_state_dict(t.state_dict())
    assert t2.student() is t2.actor_avg and t2.actor_avg.layers[0].deterministic
    assert torch.equal(t2.actor_avg.layers[0].theta, t.actor_avg.layers[0].theta)
    with pytest.raises(BpdError, match="--finetune-ema averages the Bayesian student's fine-tune"):
        _check_config(DistillConfig(teacher="t", dataset="d", finetune=0.0, finetune_ema=0.001))
