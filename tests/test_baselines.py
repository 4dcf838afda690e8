"""Distillation baselines: Gaussian closed forms against Monte Carlo, each update rule's loss on a
hand-built batch, pruning to a count, the online loop's step accounting, the registry's sizes."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bpd.errors import BpdError
from export.collapse import remove_dead_neurons
from training import gaussian as G
from training.baseline_nets import GaussianStudent, TeacherModel, prune_target
from training.baseline_rules import BaselineConfig, validate
from training.baseline_trainer import BaselineTrainer, Collector, reward_to_go
from training.baselines import train_baseline
from training.teacher import Teacher

REPO = Path(__file__).resolve().parents[1]
IDP_TEACHER = REPO / "benchmarks" / "teachers" / "InvertedDoublePendulum-v5.npz"


# --------------------------------------------------------------------------- closed forms


def test_cross_entropy_kl_entropy_match_monte_carlo():
    g = torch.Generator().manual_seed(0)
    mu_p, ls_p = torch.tensor([0.3, -1.0, 2.0]), torch.tensor([-0.5, 0.2, -1.5])
    mu_q, ls_q = torch.tensor([0.0, -0.4, 1.5]), torch.tensor([0.1, -0.3, -1.0])
    u = mu_p + torch.exp(ls_p) * torch.randn(400_000, 3, generator=g)
    lq, lp = G.log_prob(u, mu_q, ls_q), G.log_prob(u, mu_p, ls_p)
    n = len(u)
    for closed, samples in [(G.cross_entropy(mu_p, ls_p, mu_q, ls_q), -lq), (G.entropy(ls_p), -lp),
                            (G.kl(mu_p, ls_p, mu_q, ls_q), lp - lq)]:
        se = samples.std().item() / math.sqrt(n)
        assert abs(closed.item() - samples.mean().item()) < 4 * se, (closed.item(), samples.mean().item(), se)


def test_log_prob_is_the_normal_density():
    assert G.log_prob(torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([0.0])).item() == pytest.approx(
        -0.5 - 0.5 * math.log(2 * math.pi))


def test_tempered_gaussian_is_the_renormalised_power():
    # p(u)^(1/T) renormalised, on a fine grid, has variance T sigma^2
    sigma, T = 0.7, 0.25
    u = np.linspace(-6, 6, 200_001)
    dens = np.exp(-0.5 * (u / sigma) ** 2 / T)
    dens /= dens.sum()
    var = float((dens * u * u).sum())
    assert math.exp(2 * G.temper(torch.tensor(math.log(sigma)), T).item()) == pytest.approx(var, rel=1e-4)


# --------------------------------------------------------------------------- update rules on a hand-built batch


MU_T, SIG_T, MU_S, SIG_S = 0.5, 0.2, 0.1, 0.5


def _hand_teacher(obs_dim: int = 2) -> Teacher:
    """A teacher whose pre-tanh output is MU_T everywhere."""
    return Teacher(weights=[np.zeros((1, obs_dim), np.float32)], biases=[np.array([MU_T], np.float32)],
                   activation="tanh", output="tanh", obs_mean=np.zeros(obs_dim, np.float32),
                   obs_std=np.ones(obs_dim, np.float32), action_low=-np.ones(1, np.float32),
                   action_high=np.ones(1, np.float32), env_id="Hand-v0", algo="td3")


def _trainer(method: str, critic_bias: float | None = None, **kw) -> BaselineTrainer:
    cfg = BaselineConfig(method=method, teacher="t", dataset="d", hidden=[3], teacher_std=SIG_T,
                         init_log_std=math.log(SIG_S), **kw)
    sb3 = None
    if critic_bias is not None:  # a linear critic Q(s, a) = critic_bias
        sb3 = {"critic.qf0.0.weight": np.zeros((1, 3), np.float32),
               "critic.qf0.0.bias": np.array([critic_bias], np.float32)}
    tr = BaselineTrainer(cfg, 2, 1, TeacherModel(_hand_teacher(), SIG_T, sb3), np.zeros(2), np.ones(2))
    with torch.no_grad():  # the student's mean is MU_S everywhere
        last = tr.student.layers[-1]
        last.weight.zero_()
        last.bias.fill_(MU_S)
        if tr.value is not None:
            for p in tr.value.parameters():
                p.zero_()
    return tr


OBS = torch.tensor([[0.1, -0.2], [1.0, 0.5], [-0.3, 0.0]])
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
D2 = (MU_T - MU_S) ** 2


@pytest.mark.parametrize("method,expected", [
    ("nll", math.log(SIG_S) + HALF_LOG_2PI + D2 / (2 * SIG_S ** 2)),
    ("mse", D2),
    ("kl", math.log(SIG_S / (0.1 * SIG_T)) + (0.01 * SIG_T ** 2 + D2) / (2 * SIG_S ** 2) - 0.5),
    ("teacher-distill", math.log(SIG_S) + HALF_LOG_2PI + (SIG_T ** 2 + D2) / (2 * SIG_S ** 2)),
    ("on-policy-distill", math.log(SIG_S) + HALF_LOG_2PI + (SIG_T ** 2 + D2) / (2 * SIG_S ** 2)),
    ("n-distill", math.log(SIG_S) + HALF_LOG_2PI + (SIG_T ** 2 + D2) / (2 * SIG_S ** 2)),
    ("expected-entropy-regularised", math.log(SIG_T) + HALF_LOG_2PI + (SIG_S ** 2 + D2) / (2 * SIG_T ** 2)),
    ("entropy-regularised", 0.0),
    ("teacher-v-reward", 0.0),
])
def test_loss_term_of_each_rule(method, expected):
    loss, _ = _trainer(method).loss_term(OBS)
    assert loss.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


def _segment(ratio: float = 1.0) -> dict[str, torch.Tensor]:
    """Three steps collected by a student whose likelihood of each action was 1/ratio times the hand-built
    student's (ratio 1: the segment is the hand-built student's own)."""
    u = torch.tensor([[0.5], [0.0], [1.0]])
    logp = G.log_prob(u, torch.full((3, 1), MU_S), torch.full((3, 1), math.log(SIG_S))) - math.log(ratio)
    return {"obs": OBS, "u": u, "logp": logp, "rew": torch.tensor([1.0, 2.0, 3.0]),
            "next_obs": OBS.flip(0), "term": torch.tensor([0.0, 0.0, 1.0]), "done": torch.tensor([0.0, 0.0, 1.0])}


def test_reward_terms_of_the_reward_rules():
    seg = _segment()
    # entropy regularised: the teacher's log-likelihood of the action taken
    r = _trainer("entropy-regularised").rewards(seg)
    want = [-(u - MU_T) ** 2 / (2 * SIG_T ** 2) - math.log(SIG_T) - HALF_LOG_2PI for u in (0.5, 0.0, 1.0)]
    assert r.tolist() == pytest.approx(want, rel=1e-5)
    # N-distill: minus the cross-entropy at the next state, nothing after a terminal step
    ce = math.log(SIG_S) + HALF_LOG_2PI + (SIG_T ** 2 + D2) / (2 * SIG_S ** 2)
    assert _trainer("n-distill").rewards(seg).tolist() == pytest.approx([-ce, -ce, 0.0], rel=1e-5)


def test_reward_to_go_stops_at_episode_ends():
    r = reward_to_go(torch.tensor([1.0, 1.0, 1.0, 2.0]), torch.tensor([0.0, 1.0, 0.0, 1.0]), 0.5)
    assert r.tolist() == pytest.approx([1.5, 1.0, 2.0, 2.0])


def test_teacher_v_reward_advantage_and_value_fit():
    tr = _trainer("teacher-v-reward", critic_bias=3.0, gamma=0.5)
    assert tr.teacher.value_source.startswith("the teacher's first critic")
    assert tr.v_teacher(OBS).tolist() == pytest.approx([3.0] * 3)
    seg = _segment()
    _, info = tr.reward_term(seg)
    # V_theta = 0 before the step: its TD(0) target is r, so the value loss is mean(r^2)
    assert info["losses/value"] == pytest.approx((1 + 4 + 9) / 3)
    # the advantage r + gamma (1 - term) V_T(s') - V_theta(s) = [2.5, 3.5, 3.0] drives the policy gradient:
    # standardised, the step with the largest advantage has its log-likelihood raised most
    tr2 = _trainer("teacher-v-reward", critic_bias=3.0, gamma=0.5)
    loss, _ = tr2.reward_term(seg)
    loss.backward()
    adv = torch.tensor([2.5, 3.5, 3.0])
    adv = (adv - adv.mean()) / (adv.std() + 1e-6)
    mu = torch.tensor(MU_S, requires_grad=True)
    ref = -(G.log_prob(seg["u"], mu.expand(3, 1), torch.full((3, 1), math.log(SIG_S))) * adv).mean()
    ref.backward()
    assert tr2.student.layers[-1].bias.grad.item() == pytest.approx(mu.grad.item(), rel=1e-5)


def _bias_grad(tr: BaselineTrainer, seg: dict[str, torch.Tensor]) -> float:
    loss, _ = tr.reward_term(seg)
    loss.backward()
    return tr.student.layers[-1].bias.grad.item()


def test_policy_gradient_on_a_reused_segment_is_clipped():
    # the segment's rewards-to-go [2, 1, 3] standardise to advantages [0, -1, 1]
    seg = _segment(ratio=1.5) | {"rtg": torch.tensor([2.0, 1.0, 3.0]), "rhat": torch.zeros(3)}
    adv = torch.tensor([0.0, -1.0, 1.0])
    mu = torch.tensor(MU_S, requires_grad=True)
    rho = torch.exp(G.log_prob(seg["u"], mu.expand(3, 1), torch.full((3, 1), math.log(SIG_S))) - seg["logp"])
    assert rho.detach().tolist() == pytest.approx([1.5] * 3, rel=1e-5)
    # rho = 1.5 > 1 + eps: a positive advantage takes the clipped constant 1.2 A (no gradient), a negative one
    # keeps rho A, so only the step with A = -1 moves the student
    ref = -(rho[1] * adv[1]) / 3
    ref.backward()
    want = mu.grad.item()
    assert want != 0.0
    assert _bias_grad(_trainer("entropy-regularised"), seg) == pytest.approx(want, rel=1e-5)
    # inside the clip range the surrogate's gradient is REINFORCE's, weighted by rho
    mu.grad = None
    seg1 = _segment(ratio=1.1) | {"rtg": seg["rtg"], "rhat": seg["rhat"]}
    rho1 = torch.exp(G.log_prob(seg1["u"], mu.expand(3, 1), torch.full((3, 1), math.log(SIG_S))) - seg1["logp"])
    (-(rho1 * adv).mean()).backward()
    assert _bias_grad(_trainer("entropy-regularised"), seg1) == pytest.approx(mu.grad.item(), rel=1e-5)
    from bpd.errors import BpdError
    from training.baseline_rules import validate
    with pytest.raises(BpdError, match="--clip"):
        validate(BaselineConfig(method="n-distill", teacher="t", dataset="d", clip=1.0))


def test_reward_rules_need_student_control():
    from bpd.errors import BpdError
    from training.baseline_rules import validate
    with pytest.raises(BpdError, match="--control student"):
        validate(BaselineConfig(method="n-distill", teacher="t", dataset="d", control="teacher"))
    assert validate(BaselineConfig(method="rusu-kl" if False else "kl", teacher="t", dataset="d")) == "teacher"
    assert validate(BaselineConfig(method="on-policy-distill", teacher="t", dataset="d")) == "student"


# --------------------------------------------------------------------------- size


def test_magnitude_pruning_reaches_the_count_and_keeps_the_largest():
    torch.manual_seed(0)
    s = GaussianStudent(5, 2, [7, 4])
    dense = s.params_nonzero()
    assert dense == 5 * 7 + 7 + 7 * 4 + 4 + 4 * 2 + 2
    before = torch.cat([l.weight.abs().flatten() for l in s.layers])
    s.prune_to(40)  # nonzero parameters of the collapsed student: what the export ships (training/live.py)
    assert s.params_nonzero() == 40  # seed 0: the prefix and the fill reach the budget exactly
    kept = torch.cat([(l.weight * m).flatten() for l, m in zip(s.layers, s.masks())])
    assert kept.abs().max() == before.max()  # the largest weight stays
    # the pruned network's output uses the masked weights
    x = torch.randn(3, 5)
    h = x
    for i, l in enumerate(s.layers):
        h = h @ (l.weight * s.masks()[i]).T + l.bias
        if i < 2:
            h = torch.tanh(h)
    assert torch.allclose(s(x)[0], h)
    pol = s.to_policy(np.zeros(5), np.ones(5), -np.ones(2), np.ones(2))
    cw, cb = remove_dead_neurons(pol.weights, pol.biases, pol.activation)
    assert sum(int((w != 0).sum()) for w in cw) + sum(b.size for b in cb) == s.params_nonzero()


def test_prune_schedule_endpoints():
    assert prune_target(0, 100, 1000, 100, 0.2, 0.6) == 1000
    assert prune_target(20, 100, 1000, 100, 0.2, 0.6) == 1000
    assert prune_target(40, 100, 1000, 100, 0.2, 0.6) == round(100 + 900 * 0.125)
    assert prune_target(60, 100, 1000, 100, 0.2, 0.6) == 100
    assert prune_target(99, 100, 1000, 100, 0.2, 0.6) == 100


# --------------------------------------------------------------------------- the online loop


def test_collector_counts_steps_and_mixed_control_hands_over():
    from training.teacher import load_teacher
    t = load_teacher(IDP_TEACHER)
    cfg = BaselineConfig(method="on-policy-distill", teacher="t", dataset="d", control="mixed")
    tr = BaselineTrainer(cfg, t.obs_dim, t.act_dim, TeacherModel(t, 0.2), t.obs_mean, t.obs_std)
    c = Collector("InvertedDoublePendulum-v5", "mixed", 0)
    try:
        assert c.beta(100) == 1.0
        seg = c.collect(30, tr, 100)
        assert c.env_steps == 30 and len(seg["obs"]) == 30 and seg["done"][-1] == 1.0
        assert c.beta(100) == pytest.approx(0.4)
        c.collect(25, tr, 100)
        assert c.env_steps == 55 and c.beta(100) == 0.0
    finally:
        c.close()
    # under student control each step records the student's log-likelihood of the action it took
    c = Collector("InvertedDoublePendulum-v5", "student", 0)
    try:
        seg = c.collect(20, tr, 100)
    finally:
        c.close()
    with torch.no_grad():
        mu, ls = tr.student(tr.norm(torch.as_tensor(seg["obs"])))
        want = G.log_prob(torch.as_tensor(seg["u"]), mu, ls)
    assert seg["logp"].tolist() == pytest.approx(want.tolist(), rel=1e-5, abs=1e-5)


def test_online_episodes_take_seeds_of_their_own_range_never_the_reporting_ones():
    from training.envs import make_env
    from training.seed_blocks import (
        COLLECT_BASE,
        COLLECT_BLOCK,
        COLLECT_MAX_STEPS,
        MAX_RUN_SEED,
        VISIT_MORE_BASE,
        VISIT_MORE_BLOCK,
        collect_seed,
    )
    runs = MAX_RUN_SEED + 1
    # past every other range (the visits' is the highest), the last run seed's block still below 2**31
    assert COLLECT_BASE >= VISIT_MORE_BASE + VISIT_MORE_BLOCK * runs and COLLECT_BASE + COLLECT_BLOCK * runs <= 2 ** 31
    assert collect_seed(2, 5) == COLLECT_BASE + 2 * COLLECT_BLOCK + 5
    assert COLLECT_BLOCK - COLLECT_MAX_STEPS >= 300_000  # each resume skips a seed: room for that many
    with pytest.raises(BpdError, match="past its block"):
        collect_seed(0, COLLECT_BLOCK)
    # run seed 0's first episode starts where a reset with its seed does, not where reporting episode 0 does
    from training.teacher import load_teacher
    t = load_teacher(IDP_TEACHER)
    cfg = BaselineConfig(method="teacher-distill", teacher="t", dataset="d", control="uniform")
    tr = BaselineTrainer(cfg, t.obs_dim, t.act_dim, TeacherModel(t, 0.2), t.obs_mean, t.obs_std)
    c = Collector("InvertedDoublePendulum-v5", "uniform", 0)
    env = make_env("InvertedDoublePendulum-v5")
    try:
        seg = c.collect(1, tr, 100)
        want, _ = env.reset(seed=COLLECT_BASE)
        report, _ = env.reset(seed=0)
        assert np.array_equal(seg["obs"][0], want.astype(np.float32)) and not np.allclose(want, report)
    finally:
        c.close()
        env.close()
    with pytest.raises(BpdError, match="--env-steps must be at most"):
        validate(BaselineConfig(method="on-policy-distill", teacher="t", dataset="d", env_steps=COLLECT_MAX_STEPS + 1))
    validate(BaselineConfig(method="kl", teacher="t", dataset="d", env_steps=COLLECT_MAX_STEPS + 1))  # offline


def test_a_dataset_collected_by_default_starts_where_no_reported_episode_does(tmp_path):
    """`bpd collect`'s default seed lies outside every range a run chooses or reports on, and its first episode
    starts where a reset with that seed does (with 0 it started where reporting episode 0 does)."""
    from training.collect import CollectConfig, collect, load_dataset
    from training.envs import make_env
    from training.seed_blocks import DATASET_SEED, MAX_RUN_SEED, SEED_BLOCK, VISIT_BASE, VISIT_MORE_BASE
    # the ranges below the visits' far one (reporting, training and selection evaluations, the kernel choice's and
    # probes' 300,000 on, the visits' first blocks) end together at the last run seed's first visit block
    assert VISIT_BASE + SEED_BLOCK * (MAX_RUN_SEED + 1) <= DATASET_SEED < VISIT_MORE_BASE
    out = tmp_path / "d.npz"
    collect(CollectConfig(teacher=str(IDP_TEACHER), out=str(out), steps=3, progress=False))
    ds = load_dataset(str(out))
    env = make_env("InvertedDoublePendulum-v5")
    try:
        want, _ = env.reset(seed=DATASET_SEED)
        report, _ = env.reset(seed=0)
    finally:
        env.close()
    assert ds.meta["seed"] == DATASET_SEED and np.array_equal(ds.observations[0], want.astype(np.float32))
    assert not np.allclose(want, report)


@pytest.fixture(scope="module")
def idp_dataset(tmp_path_factory) -> str:
    from training.collect import CollectConfig, collect
    out = tmp_path_factory.mktemp("ds") / "ds.npz"
    collect(CollectConfig(teacher=str(IDP_TEACHER), out=str(out), steps=300, noise=0.1, seed=1, progress=False))
    return str(out)


def test_dagger_run_accounts_environment_and_gradient_steps(idp_dataset, tmp_path):
    cfg = BaselineConfig(method="on-policy-distill", teacher=str(IDP_TEACHER), dataset=idp_dataset,
                         out=str(tmp_path / "run"), hidden=[8], steps=20, env_steps=60, collect_every=25,
                         eval_every=10, eval_episodes=1, checkpoint_every=10, nonzero=60, progress=False)
    s = train_baseline(cfg)
    assert s["env_steps"] == 60 and s["env_steps_online"] == 60 and s["dataset_steps"] == 0
    assert s["grad_steps"] == 20 and 50 <= s["params_nonzero"] <= 60 and s["control"] == "student"
    assert s["teacher_distribution"].startswith("fixed spread: sigma_T = 0.2")
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert len(ck["buffer"]) == 60  # every state the student visited, aggregated
    import csv
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == [10, 20] and int(rows[-1]["env_steps"]) == 60
    from training.teacher import load_teacher
    pol = load_teacher(tmp_path / "run" / "policy.npz")
    assert pol.algo == "distilled on-policy-distill"
    cw, cb = remove_dead_neurons(pol.weights, pol.biases, pol.activation)  # the summary counts what ships
    assert sum(int((w != 0).sum()) for w in cw) + sum(b.size for b in cb) == s["params_nonzero"]
    # the same run resumed from its checkpoint at step 20 changes nothing
    s2 = train_baseline(BaselineConfig(**{**cfg.__dict__, "resume": True}))
    assert s2["grad_steps"] == 20 and s2["env_steps"] == 60
    # a run begun before online episodes had seeds of their own (its buffer holds the reporting seeds' episodes)
    # records no collect_seed_base, and is not resumed into one that does
    from training.seed_blocks import COLLECT_BASE
    conf = tmp_path / "run" / "config.json"
    rec = json.loads(conf.read_text())
    assert rec.pop("collect_seed_base") == COLLECT_BASE
    conf.write_text(json.dumps(rec))
    with pytest.raises(BpdError, match=r"different configuration \(collect_seed_base\)"):
        train_baseline(BaselineConfig(**{**cfg.__dict__, "resume": True}))


def test_teacher_control_charges_the_dataset(idp_dataset, tmp_path):
    s = train_baseline(BaselineConfig(method="kl", teacher=str(IDP_TEACHER), dataset=idp_dataset,
                                      out=str(tmp_path / "run"), hidden=[8], steps=5, eval_every=5,
                                      eval_episodes=1, progress=False))
    assert s["env_steps"] == 300 and s["dataset_steps"] == 300 and s["env_steps_online"] == 0


def test_a_teacher_value_fitted_on_the_dataset_charges_its_environment_steps(idp_dataset, tmp_path):
    """teacher-v-reward without the teacher's critic fits V_T on the offline dataset (its rewards and transitions)
    and then collects online: both budgets are charged (it was charged the online steps alone, so the baselines
    table gave it the same environment steps as the rules that learn from one of the two)."""
    s = train_baseline(BaselineConfig(method="teacher-v-reward", teacher=str(IDP_TEACHER), dataset=idp_dataset,
                                      out=str(tmp_path / "run"), hidden=[8], steps=4, env_steps=40, collect_every=20,
                                      value_steps=5, eval_every=4, eval_episodes=1, progress=False))
    assert s["teacher_value"].startswith("fitted: V_T by TD(0) on the offline dataset")
    assert s["env_steps_online"] == 40 and s["dataset_steps"] == 300 and s["env_steps"] == 340
    import csv
    assert [int(r["env_steps"]) for r in csv.DictReader(open(tmp_path / "run" / "metrics.csv"))] == [340]


def test_trainer_state_round_trip():
    torch.manual_seed(1)
    a = _trainer("n-distill")
    seg = _segment() | {"rhat": torch.zeros(3), "rtg": torch.tensor([1.0, 0.0, -1.0])}
    for _ in range(3):
        a.update({"obs": OBS}, seg)
    b = _trainer("n-distill")
    b.load_state_dict(a.state_dict())
    ia, ib = a.update({"obs": OBS}, seg), b.update({"obs": OBS}, seg)
    assert ia.keys() == ib.keys() and a.step == b.step == 4
    assert [ia[k] for k in ia] == pytest.approx([ib[k] for k in ia], rel=1e-6)


# --------------------------------------------------------------------------- registry and command line


def test_registry_sizes_baselines_from_the_bpd_cell():
    from bpd_app.methods import CellInputs, get
    dep = {"params_nonzero": 321, "train": {"hidden": [64, 64]}, "export": {"widths": [11, 9, 7, 1]}}
    c = CellInputs("InvertedDoublePendulum-v5", 2, str(IDP_TEACHER), "d.npz", Path("/nonexistent/run"),
                   {"size": "pruned", "control": "mixed"}, {"bpd": dep})
    cmd = get("teacher-distill").command(c)
    assert cmd[:4] == ["baseline", "train", "--method", "teacher-distill"]
    assert cmd[cmd.index("--nonzero") + 1] == "321" and cmd[cmd.index("--control") + 1] == "mixed"
    assert cmd[cmd.index("--hidden") + 1:cmd.index("--hidden") + 3] == ["64", "64"]
    c.args = {"size": "dense"}
    cmd = get("rusu-kl").command(c)
    assert cmd[cmd.index("--hidden") + 1:cmd.index("--hidden") + 3] == ["9", "7"] and "--nonzero" not in cmd
    c.args = {"size": "large"}
    cmd = get("rusu-nll").command(c)
    assert cmd[cmd.index("--hidden") + 1:cmd.index("--hidden") + 3] == ["256", "256"]
    assert get("n-distill").needs == ("bpd",) and get("n-distill").product == "policy.npz"


def test_cli_rejects_a_reward_rule_on_teacher_data(idp_dataset, tmp_path, capsys):
    from bpd_app.cli import main
    rc = main(["baseline", "train", "--method", "n-distill", "--control", "teacher", "--teacher", str(IDP_TEACHER),
               "--dataset", idp_dataset, "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and err[0].startswith("bpd: error:")


def test_baselines_run_through_the_grid_runner(tiny_pipeline, tmp_path, benchmark_script):
    """A bpd cell, then baselines sized from it: pruned to its nonzero count, dense at its collapsed widths,
    and an online one whose environment steps land in result.json."""
    from tests.test_experiment import TINY_DISTILL, _plan, _run_plan
    tiny = {"steps": 20, "eval_every": 10, "eval_episodes": 1}
    plan = _plan(tmp_path, tiny_pipeline / "teacher.npz", {
        "bpd": {"args": TINY_DISTILL},
        "rusu-kl": {"args": tiny},
        "rusu-kl-dense": {"method": "rusu-kl", "args": tiny | {"size": "dense"}},
        "on-policy-distill": {"args": tiny | {"env_steps": 40, "collect_every": 20}},
    })
    runs = tmp_path / "runs"
    p = _run_plan(plan, runs)
    assert p.returncode == 0, p.stdout + p.stderr
    cell = runs / "InvertedPendulum-v5"
    bpd_res = json.loads((cell / "bpd" / "seed0" / "result.json").read_text())
    kl = json.loads((cell / "rusu-kl" / "seed0" / "result.json").read_text())
    assert kl["params_nonzero"] == bpd_res["params_nonzero"]
    assert kl["train"]["nonzero_budget"] == bpd_res["params_nonzero"]
    assert kl["train"]["env_steps"] == 500 and kl["train"]["grad_steps"] == 20 and kl["train"]["control"] == "teacher"
    assert bpd_res["train"]["env_steps"] == 500  # the BPD cell is charged its dataset
    from export.collapse import collapse
    from training.student import load_student
    s, _, stats = load_student(cell / "bpd" / "seed0" / "run" / "student.pt")
    dense = json.loads((cell / "rusu-kl-dense" / "seed0" / "result.json").read_text())
    assert dense["train"]["hidden"] == collapse(s.collapse(**stats)).widths[1:-1]
    online = json.loads((cell / "on-policy-distill" / "seed0" / "result.json").read_text())
    assert online["train"]["env_steps"] == 40 and online["train"]["control"] == "student"
    assert online["train"]["visited_spread"] > 0
    tables = tmp_path / "tables"  # the baselines table beside the runner's, with its environment-step curves
    t = subprocess.run([sys.executable, str(REPO / "benchmarks" / "baselines_table.py"), str(plan), "--runs",
                        str(runs), "--out", str(tables)], capture_output=True, text=True, timeout=300)
    assert t.returncode == 0, t.stderr
    md = (tables / "baselines.md").read_text()
    assert "| on-policy-distill | on-policy-distill | pruned | student | 1/1 |" in md
    assert "![InvertedPendulum-v5.env-curves.png](InvertedPendulum-v5.env-curves.png)" in md
    assert (tables / "InvertedPendulum-v5.env-curves.png").is_file()

    # the control-policy comparison reads the same cells and evaluates each under a rig's randomisation
    from bpd.io import sha256_file
    cp = benchmark_script("control_policy")
    out = tmp_path / "results"
    assert cp.main([str(plan), "--runs", str(runs), "--out", str(out)]) == 0
    rep = json.loads((out / "control.json").read_text())
    rows = {r["label"]: r for r in rep["rows"]}
    assert set(rows) == {"teacher", "bpd", "on-policy-distill"}  # rusu-kl and rusu-kl-dense: another rule
    assert rows["on-policy-distill"]["control"] == "student" and rows["bpd"]["control"] == "teacher"
    assert rows["on-policy-distill"]["spread"] == [online["train"]["visited_spread"]]
    assert rows["bpd"]["nominal"] == [bpd_res["eval"]["return_mean"]]
    # the teacher's nominal return is measured with its randomised one, not read from a cell
    tnom = json.loads((out / "robust" / "InvertedPendulum-v5" / "teacher.nominal.json").read_text())
    assert tnom["key"]["rig"] is None and len(tnom["eval"]["returns"]) == rep["episodes"]
    assert rows["teacher"]["nominal"] == [tnom["eval"]["return_mean"]]
    assert tnom["eval"]["return_mean"] == pytest.approx(bpd_res["teacher"]["return_mean"])  # one machine: equal
    cached = json.loads((out / "robust" / "InvertedPendulum-v5" / "bpd" / "seed0.desktop-cartpole.json").read_text())
    assert rows["bpd"]["randomised"] == [cached["eval"]["return_mean"]] and len(cached["eval"]["returns"]) == 2
    assert cached["key"]["spec_digest"] == bpd_res["spec_digest"]
    student = cell / "bpd" / "seed0" / "run" / "student.pt"
    assert cached["key"]["model"] == bpd_res["product_sha256"] == sha256_file(student)
    assert "| on-policy-distill | pruned | student | 1/1 |" in (out / "control.md").read_text()
    # the rows: the rule at BPD's count and dense at its widths, not other rules or the teacher's size
    many = tmp_path / "many.yaml"
    many.write_text("envs: [A]\nseeds: [0]\nteachers: {A: t.npz}\nmethods:\n  bpd: {}\n  rusu-kl: {}\n"
                    "  teacher-distill: {}\n  teacher-distill-dense: {method: teacher-distill, args: {size: dense}}\n"
                    "  teacher-distill-large: {method: teacher-distill, args: {size: large}}\n"
                    "  on-policy-distill-dense: {method: on-policy-distill, args: {size: dense}}\n")
    from bpd_app.experiment.plan import load_plan
    assert cp.control_labels(load_plan(many)) == ["bpd", "teacher-distill", "teacher-distill-dense",
                                                  "on-policy-distill-dense"]
    assert (out / "InvertedPendulum-v5.visited.png").is_file()

    # the models gone with the run root: the committed evaluations are read, nothing is evaluated again
    from bpd_app.experiment.tables import write_table
    write_table(load_plan(plan, str(runs)), tmp_path / "benchmarks" / "results" / "tiny")  # commits the summaries
    import shutil
    shutil.rmtree(runs)
    assert cp.main([str(plan), "--runs", str(runs), "--out", str(out)]) == 0
    again = {r["label"]: r for r in json.loads((out / "control.json").read_text())["rows"]}
    assert again["bpd"]["randomised"] == rows["bpd"]["randomised"] and again["bpd"]["unmeasured"] == []
    assert again["on-policy-distill"]["randomised"] == rows["on-policy-distill"]["randomised"]
    assert again["bpd"]["spread"] == rows["bpd"]["spread"] != []  # the teacher data's, kept with the dataset gone
    (out / "robust" / "InvertedPendulum-v5" / "bpd" / "seed0.desktop-cartpole.json").unlink()
    assert cp.main([str(plan), "--runs", str(runs), "--out", str(out)]) == 0
    lost = {r["label"]: r for r in json.loads((out / "control.json").read_text())["rows"]}["bpd"]
    assert lost["unmeasured"] == [0] and lost["randomised"] == [] and lost["nominal"] == rows["bpd"]["nominal"]
    assert "seed 0 not measured, its model lost" in (out / "control.md").read_text()


def test_sac_log_std_head_read_from_the_zip(tmp_path):
    import io
    import zipfile
    t = Teacher(weights=[np.zeros((3, 2), np.float32), np.zeros((1, 3), np.float32)],
                biases=[np.array([1.0, 2.0, 3.0], np.float32), np.array([0.5], np.float32)], activation="relu",
                output="tanh", obs_mean=np.zeros(2, np.float32), obs_std=np.ones(2, np.float32),
                action_low=-np.ones(1, np.float32), action_high=np.ones(1, np.float32), env_id="Hand-v0", algo="sac")
    buf = io.BytesIO()
    torch.save({"actor.log_std.weight": torch.full((1, 3), 0.1), "actor.log_std.bias": torch.tensor([-1.0])}, buf)
    with zipfile.ZipFile(tmp_path / "sac.zip", "w") as z:
        z.writestr("policy.pth", buf.getvalue())
    from training.baseline_nets import read_sb3
    tm = TeacherModel(t, 0.2, read_sb3(tmp_path / "sac.zip"))
    mu, ls = tm(torch.zeros(4, 2))
    # log std = 0.1 * (1 + 2 + 3) - 1 on the last hidden layer's output
    assert mu.flatten().tolist() == pytest.approx([0.5] * 4) and ls.flatten().tolist() == pytest.approx([-0.4] * 4)
    assert tm.distribution.startswith("the SAC actor's log-std head") and tm.critic is None


def test_policy_gradient_rules_do_not_reuse_cells_of_their_first_estimator(tmp_path):
    from bpd_app.experiment.cells import execute_cell
    from bpd_app.experiment.plan import _digest, cell_spec, load_plan
    plan_path = tmp_path / "plan.yaml"
    plan_path.write_text("envs: [A]\nseeds: [0]\nteachers: {A: t.npz}\nmethods:\n  bpd: {}\n"
                         "  n-distill: {args: {size: dense}}\n  rusu-kl: {args: {size: dense}}\n"
                         "  rusu-kl-pruned: {method: rusu-kl}\n  n-distill-pruned: {method: n-distill}\n"
                         "  td-mixed: {method: teacher-distill, args: {size: dense, control: mixed}}\n"
                         "  opd-teacher: {method: on-policy-distill, args: {size: dense, control: teacher}}\n")
    plan = load_plan(plan_path, str(tmp_path / "runs"))
    specs = {c.label: (c, cell_spec(plan, c)) for c in plan.cells()}
    assert "method_revision" not in specs["bpd"][1] and "method_revision" not in specs["rusu-kl"][1]
    # size pruned (the default): its budget counts the collapsed student now, so its earlier cells are not reused;
    # the dense cells keep their digests
    # online control (n-distill's): its episodes' seeds moved out of the reporting range, so its cells run again
    assert specs["n-distill"][1]["method_revision"] == 3
    # the control in force, not the rule, decides: teacher-distill driven by a mix is online, on-policy distill driven
    # by the teacher is not
    assert specs["td-mixed"][1]["method_revision"] == 2 and "method_revision" not in specs["opd-teacher"][1]
    assert specs["rusu-kl-pruned"][1]["method_revision"] == 2 and specs["n-distill-pruned"][1]["method_revision"] == 4
    # a cell the first estimator finished is reported, not reused or overwritten
    cell, spec = specs["n-distill"]
    old = {k: v for k, v in spec.items() if k != "method_revision"}
    cell.dir.mkdir(parents=True)
    (cell.dir / "cell.json").write_text(json.dumps({"state": "done", "spec_digest": _digest(old)}))
    (cell.dir / "result.json").write_text("{}")
    rec = execute_cell(str(plan_path), cell.key, str(tmp_path / "runs"))
    assert rec["state"] == "failed" and "another specification" in rec["error"]
    assert json.loads((cell.dir / "cell.json").read_text())["state"] == "done"


def test_baselines_table_names_each_teacher_figure_when_cells_measured_it_differently(benchmark_script):
    bt = benchmark_script("baselines_table")
    same = [{"label": "bpd", "teacher_returns": [6029.19, 6029.21]}, {"label": "rusu-kl", "teacher_returns": [6029.2]}]
    assert bt.teacher_note(same) is None  # equal to the tenth: one figure, no note
    assert bt.teacher_note([{"label": "bpd", "teacher_returns": []}]) is None
    mixed = same + [{"label": "rusu-kl-large", "teacher_returns": [5976.64, 5976.64]},
                    {"label": "teacher-distill", "teacher_returns": [5976.6, None]}]
    note = bt.teacher_note(mixed)
    assert note.startswith("The teacher's return on the same evaluation episodes was measured as "
                           "6,029.2 (3 cells: bpd, rusu-kl); 5,976.6 (3 cells: rusu-kl-large, teacher-distill):")


def test_baselines_table_names_each_methods_seeds_by_kernel_kind_where_an_environment_mixes_kinds(benchmark_script):
    """Hand-made rows: the baselines table carries the runner's kernel note for the environment that mixes
    kinds of torch CPU kernel, and none for the one that does not."""
    from types import SimpleNamespace

    bt = benchmark_script("baselines_table")
    plan = SimpleNamespace(name="p", path="p.yaml", envs=["A-v0", "B-v0"], rel=lambda p: str(p))

    def row(env, label, kinds):
        return {"env": env, "label": label, "method": label, "size": "-", "control": None,
                "seeds_done": f"{len(kinds)}/3", "teacher_returns": [],
                "per_seed": [{"seed": s, "kernels": k} for s, k in enumerate(kinds)]}

    rows = [row("A-v0", "bpd", ["AVX2", "AVX2"]), row("A-v0", "rusu-kl", ["AVX512", "AVX2"]),
            row("B-v0", "bpd", ["AVX2"]), row("B-v0", "rusu-kl", ["AVX2"])]
    md = bt.markdown(plan, rows)
    a, b = md.split("## A-v0")[1].split("## B-v0")
    assert "kind of torch CPU kernel" in a and a.count("(seeds 0, 1)") == 1
    assert ("unrecorded: summaries older than the record): "
            "bpd AVX2 (seeds 0, 1), rusu-kl AVX2 (seed 1); AVX512 (seed 0).\n") in a
    assert "kind of torch CPU kernel" not in b


def test_baselines_table_names_the_c_kernel_of_its_cycles_and_the_pruned_rows_budget(benchmark_script):
    """The baselines table's instructions and cycles are of the kernel each cell's bench measured (the generic float
    kernel, its fast tanh, the generated one, ...), which it did not name: the runner's table has the column. A pruned
    row was given the BPD cell's nonzero count and keeps less on live units (IDP: 64-249 of 317-412): the budget
    column shows both, where 'at equal size' alone read as the same count."""
    from types import SimpleNamespace

    bt = benchmark_script("baselines_table")
    plan = SimpleNamespace(name="p", path="p.yaml", envs=["A-v0"], rel=lambda p: str(p))
    row = {"env": "A-v0", "label": "rusu-kl", "method": "rusu-kl", "size": "pruned", "control": "teacher",
           "seeds_done": "1/1", "teacher_returns": [], "per_seed": [], "m4f_instructions_median": 5357.0,
           "m4f_cycles_median": 9616.0, "m4f_kernel": "bpd-fast-tanh", "nonzero_min": 64, "nonzero_max": 249,
           "nonzero_budget_min": 317.0, "nonzero_budget_max": 412.0}
    md = bt.markdown(plan, [row])
    header = next(x for x in md.splitlines() if x.startswith("| method"))
    line = next(x for x in md.splitlines() if x.startswith("| rusu-kl"))
    cols = dict(zip([c.strip() for c in header.split("|")], [c.strip() for c in line.split("|")]))
    assert cols["M4F cycles, est. (median)"] == "9,616" and cols["their kernel"] == "bpd-fast-tanh"
    assert "m4f_kernel" in bt.COLS
    # a pruned row's budget (the BPD cell's count) beside what its collapsed network kept: not the same size
    assert cols["nonzero"] == "64-249" and cols["budget"] == "317-412" and "nonzero_budget_min" in bt.COLS


def test_a_run_started_with_relative_inputs_records_them_from_its_directory_and_resumes(idp_dataset, tmp_path,
                                                                                        monkeypatch):
    """A teacher and dataset given relative to the working directory are recorded relative to the run directory (so
    an export from elsewhere finds them); a resumption with the same files is the same configuration, another file
    is not; a run recorded before (paths as given) resumes from its working directory."""
    import json
    import shutil

    from bpd.errors import BpdError

    monkeypatch.chdir(tmp_path)
    shutil.copy(IDP_TEACHER, "t.npz")
    shutil.copy(idp_dataset, "d.npz")
    cfg = BaselineConfig(method="kl", teacher="t.npz", dataset="d.npz", out="runs/b", hidden=[8], steps=5,
                         eval_every=5, eval_episodes=1, progress=False)
    train_baseline(cfg)
    rec = json.loads((tmp_path / "runs" / "b" / "config.json").read_text())
    assert (rec["teacher"], rec["dataset"]) == ("../../t.npz", "../../d.npz")
    assert train_baseline(BaselineConfig(**{**cfg.__dict__, "resume": True}))["grad_steps"] == 5
    shutil.copy("d.npz", "d2.npz")
    with pytest.raises(BpdError, match="different configuration \\(dataset\\)"):
        train_baseline(BaselineConfig(**{**cfg.__dict__, "dataset": "d2.npz", "resume": True}))
    conf = tmp_path / "runs" / "b" / "config.json"
    conf.write_text(json.dumps(rec | {"teacher": "t.npz", "dataset": "d.npz"}))  # as an earlier version wrote it
    assert train_baseline(BaselineConfig(**{**cfg.__dict__, "resume": True}))["grad_steps"] == 5


def test_a_baseline_run_does_not_resume_on_a_dataset_replaced_under_its_path(idp_dataset, tmp_path):
    """Known answer: a run stopped, its dataset written anew under the same path (other rewards), `--resume` went on
    training on the new data as the run's. The content is recorded and compared, as distill and multitask do; the
    same content resumes, and a run recorded before the content was compares paths alone."""
    import dataclasses
    import json
    import shutil

    from bpd.errors import BpdError
    from training.collect import load_dataset, save_dataset

    shutil.copy(idp_dataset, tmp_path / "d.npz")
    cfg = BaselineConfig(method="kl", teacher=str(IDP_TEACHER), dataset=str(tmp_path / "d.npz"),
                         out=str(tmp_path / "b"), hidden=[8], steps=5, eval_every=5, eval_episodes=1, progress=False)
    train_baseline(cfg)
    resume = dataclasses.replace(cfg, resume=True)
    assert train_baseline(resume)["grad_steps"] == 5
    ds = load_dataset(tmp_path / "d.npz")
    save_dataset(dataclasses.replace(ds, rewards=ds.rewards + 1.0), tmp_path / "d.npz")
    with pytest.raises(BpdError, match=r"different configuration \(dataset_sha256\)"):
        train_baseline(resume)
    conf = tmp_path / "b" / "config.json"
    conf.write_text(json.dumps({k: v for k, v in json.loads(conf.read_text()).items() if "sha256" not in k}))
    assert train_baseline(resume)["grad_steps"] == 5
