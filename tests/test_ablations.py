"""The ablation students and loss terms: one update on a fixed batch changes what it should."""

import copy

import numpy as np
import pytest
import torch

from bpd.errors import BpdError
from export.collapse import remove_dead_neurons
from training.ablations import KEPT, REMOVED, PlainStudent, cubic_keep
from training.distill import BPDTrainer, DistillConfig
from training.distill_config import PAPER
from training.selection import student_from
from training.student import BayesianStudent


def paper(**kw) -> DistillConfig:
    """A config for these known-answer tests: the paper's BPD (training.distill_config.PAPER, the defaults they
    were written against) with the test's options over it."""
    return DistillConfig(**({"teacher": "t", "dataset": "d"} | PAPER | kw))

OBS, ACT, N = 3, 2, 64


def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"obs": torch.randn(N, OBS, generator=g), "next_obs": torch.randn(N, OBS, generator=g),
            "act": torch.rand(N, ACT, generator=g) * 2 - 1, "teacher_act": torch.rand(N, ACT, generator=g) * 2 - 1,
            "rew": torch.randn(N, generator=g), "term": torch.zeros(N)}


def trainer(**kw) -> BPDTrainer:
    torch.manual_seed(0)
    cfg = paper(hidden=[8, 8], critic_hidden=[16], steps=100, **kw)
    return BPDTrainer(cfg, OBS, ACT, 1000)


def params(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def test_no_value_term_has_no_critics_and_updates_the_actor_only_by_bc_and_kl():
    t = trainer(value_term=False)
    assert t.critic is None and "critic" not in t.state_dict()
    before = params(t.actor)
    info = t.update(batch())
    assert "losses/q" not in info and "losses/critic" not in info and "lambda" not in info
    assert info["losses/actor"] == pytest.approx(info["losses/bc"] + info["eta"] * t.kl_scale * info["losses/kl"])
    after = params(t.actor)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    # resumable: the state dict round-trips into a fresh trainer
    t2 = trainer(value_term=False)
    t2.load_state_dict(t.state_dict())
    assert t2.step == 1 and all(torch.equal(a, b) for a, b in zip(params(t2.actor).values(), after.values()))


@pytest.mark.parametrize("prior", ["gaussian", "laplace", "uniform"])
def test_prior_changes_the_kl_of_an_update(prior):
    t_lu, t_p = trainer(), trainer(prior=prior, prior_scale=0.5)
    b = batch()
    kl_lu, kl_p = t_lu.update(b)["losses/kl"], t_p.update(b)["losses/kl"]
    assert kl_lu != pytest.approx(kl_p)
    if prior == "uniform":
        assert t_p.actor.layers[0].threshold > t_p.cfg.log_alpha_clip


@pytest.mark.parametrize("schedule,step,expected", [("constant", 0, 0.8), ("linear", 25, 0.4),
                                                     ("linear", 60, 0.8), ("exponential", 50, 0.8)])
def test_trainer_eta_follows_the_schedule(schedule, step, expected):
    t = trainer(eta_schedule=schedule, eta_max=0.8)
    t.step = step
    assert t.eta() == pytest.approx(expected, rel=1e-9)


def test_dense_student_is_deterministic_and_has_no_kl():
    t = trainer(student="dense")
    a = t.actor
    a.train()
    x = batch()["obs"]
    assert torch.equal(a(x), a(x))
    info = t.update(batch())
    assert "losses/kl" not in info and info["losses/actor"] == pytest.approx(
        info["losses/bc"] - info["lambda"] * info["losses/q"], rel=1e-5)
    assert a.sparsity() == 0.0


def test_l1_step_shrinks_weights_and_thresholds_at_evaluation():
    t_l1, t_dense = trainer(student="l1", l1_weight=1.0, eta_schedule="constant"), trainer(student="dense")
    b = batch()
    l1_before = t_l1.actor.l1().item()
    info = t_l1.update(b)
    t_dense.update(b)
    assert info["losses/l1"] == pytest.approx(l1_before, rel=1e-6)
    assert t_l1.actor.l1().item() < t_dense.actor.l1().item()
    # the magnitude threshold: weights below it are removed in the evaluated network
    with torch.no_grad():
        t_l1.actor.layers[0].theta[0, 0] = 1e-4
    t_l1.actor.after_step(2, 100)
    assert t_l1.actor.layers[0].deterministic_weight()[0, 0] == 0
    assert t_l1.actor.layers[0].log_sigma2[0, 0] == REMOVED and t_l1.actor.layers[0].log_sigma2[0, 1] == KEPT


def test_cubic_schedule_at_known_steps():
    # 100 weights to 10: all kept before the start, 10 from the end, s_f (1 - (1 - q)^3) between
    assert cubic_keep(10, 100, 100, 10, 0.2, 0.6) == 100
    assert cubic_keep(40, 100, 100, 10, 0.2, 0.6) == 100 - round(0.9 * (1 - 0.5 ** 3) * 100)
    assert cubic_keep(60, 100, 100, 10, 0.2, 0.6) == 10 and cubic_keep(99, 100, 100, 10, 0.2, 0.6) == 10


def test_magnitude_pruning_reaches_the_count_and_keeps_the_largest_weights():
    # the budget counts the collapsed student (training/live.py): what export ships, dead units gone
    t = trainer(student="magnitude", prune_to=40, prune_start=0.1, prune_end=0.5)
    assert not t.selectable()
    for i in range(60):
        t.update(batch(i))
    a = t.actor
    assert t.selectable()
    assert a.collapsed_nonzero() <= 40
    ws = [layer.deterministic_weight().detach().numpy() for layer in a.layers]
    cw, cb = remove_dead_neurons(ws, [layer.bias.detach().numpy() for layer in a.layers], "tanh")
    assert sum(int((w != 0).sum()) for w in cw) + sum(b.size for b in cb) == a.collapsed_nonzero()
    # the largest weight standing is kept, and the kept weights are exactly the nonzero ones
    with torch.no_grad():
        mags = torch.cat([(l.theta * l.mask()).abs().flatten() for l in a.layers])
        thetas = torch.cat([l.theta.abs().flatten() for l in a.layers])
    assert int((mags > 0).sum()) == sum(int(layer.mask().sum()) for layer in a.layers)
    assert mags.max() == thetas.max()
    # removed weights stay zero through fine-tuning
    masks = [layer.mask().clone() for layer in a.layers]
    for i in range(10):
        t.update(batch(100 + i))
    assert all(torch.equal(m, layer.mask()) for m, layer in zip(masks, a.layers))


def test_magnitude_count_out_of_range_is_a_one_line_error():
    with pytest.raises(BpdError, match="--prune-to"):
        trainer(student="magnitude", prune_to=6)  # one path from 3 inputs through 8, 8 to 2 outputs: 7


@pytest.mark.parametrize("kw, message", [
    ({"student": "magnitude"}, "needs --prune-to"),
    ({"student": "dense", "prune_to": 100}, "--student magnitude, or bayesian with --finetune"),
    ({"student": "dense", "prior": "gaussian"}, "--prior applies to the Bayesian student"),
    ({"prior_scale": 0.0}, "--prior-scale must be positive"),
    ({"prune_start": 0.7, "prune_end": 0.5}, "--prune-start and --prune-end"),
    ({"l1_weight": -1.0}, "--l1-weight"),
])
def test_bad_ablation_options_are_one_line_errors(kw, message):
    from training.distill import check_ablation_options

    cfg = paper(hidden=[8, 8], **kw)
    with pytest.raises(BpdError, match=message) as e:
        check_ablation_options(cfg, OBS, ACT)
    assert "\n" not in str(e.value)


def test_plain_student_reads_back_as_a_bayesian_student():
    torch.manual_seed(1)
    st = PlainStudent(OBS, ACT, [8, 8], mode="l1", l1_threshold=0.2)
    st.after_step(0, 10)
    st.eval()
    back = student_from({"obs_dim": OBS, "act_dim": ACT, "hidden": [8, 8], "activation": "tanh", "threshold": 3.0,
                         "log_alpha_clip": 10.0}, copy.deepcopy(st.state_dict()))
    assert isinstance(back, BayesianStudent)
    x = batch()["obs"]
    torch.testing.assert_close(back(x), st(x))
    assert back.sparsity() == pytest.approx(st.sparsity()) and st.sparsity() > 0


# --------------------------------------------------------------------------- through the runner


def test_ablation_commands_take_their_size_from_the_bpd_cell(tmp_path):
    from bpd_app.methods import CellInputs, get

    dep = {"params_nonzero": 106, "train": {"hidden": [8, 8]}, "export": {"widths": [4, 8, 7, 1]}}
    c = CellInputs("E", 0, "t.npz", "d.npz", tmp_path / "run", {"hidden": [8, 8], "steps": 200}, {"bpd": dep})
    mag = get("magnitude-prune").command(c)
    assert mag[mag.index("--prune-to") + 1] == "106" and mag[mag.index("--student") + 1] == "magnitude"
    dense = get("dense-small").command(c)
    i = dense.index("--hidden")
    assert dense[i + 1:i + 3] == ["8", "7"] and dense.count("--hidden") == 1 and "--steps" in dense
    assert get("bpd-no-value").command(c).count("--no-value-term") == 1
    assert "--prior" in get("bpd-prior-laplace").command(c)
    unexported = CellInputs("E", 0, "t.npz", "d.npz", tmp_path / "run", {}, {"bpd": dep | {"export": None}})
    with pytest.raises(BpdError, match="not exported"):
        get("dense-small").command(unexported)


def test_the_cycle_cuts_take_their_budget_from_the_bpd_cells_export_and_bench(tmp_path):
    """c50: the bpd cell's layers (the meter on its export's masks) less half the integer-kernel cycles its
    result records from its bench:
    the C around the layers costs both students the same, so the cut student's kernel is half the bpd one's;
    c50-long: 0.49 of it, and half of training on the cut mask. Without the export: a one-line error."""
    from dataclasses import replace

    from bpd_app.methods import CellInputs, get
    from export.collapse import CollapsedNet
    from export.onnx_export import build_onnx, save_onnx
    from firmware_host.measure.dsp_meter import mask_cycles

    rng = np.random.default_rng(0)
    ws = [rng.normal(size=(8, 4)).astype(np.float32), rng.normal(size=(1, 8)).astype(np.float32)]
    ws[0][ws[0] < 0] = 0
    net = CollapsedNet(ws, [np.zeros(8, np.float32), np.zeros(1, np.float32)], "tanh", "tanh",
                       -np.ones(1, np.float32), np.ones(1, np.float32))
    cell = tmp_path / "E" / "bpd" / "seed0"
    (cell / "export").mkdir(parents=True)
    save_onnx(build_onnx(net, {}), cell / "export" / "policy.onnx")
    layers = mask_cycles([w != 0 for w in ws])
    whole = layers + 150.0  # the bench's whole kernel: the layers and the C around them
    dep = {"bench": {"integer": {"cycles": whole, "instructions": 250, "flash_bytes": 2000}}}
    c = CellInputs("E", 0, "t.npz", "d.npz", tmp_path / "E" / "c50" / "seed0" / "run", {}, {"bpd": dep})
    cmd = get("bpd-units-finetune-pairs-warmup-c50").command(c)
    assert float(cmd[cmd.index("--prune-to-cycles") + 1]) == pytest.approx(layers - 0.5 * whole)
    long = get("bpd-units-finetune-pairs-warmup-c50-long").command(c)
    assert float(long[long.index("--prune-to-cycles") + 1]) == pytest.approx(layers - 0.51 * whole)
    assert long[long.index("--finetune") + 1] == "0.5"
    # c50-visits-sure: c50-long's cut with the fine-tune's visits and the selection on 30 episodes without falls
    sure = get("bpd-units-finetune-pairs-warmup-c50-visits-sure").command(c)
    assert float(sure[sure.index("--prune-to-cycles") + 1]) == pytest.approx(layers - 0.51 * whole)
    assert sure[sure.index("--finetune-visits") + 1] == "20000" and sure[sure.index("--select-episodes") + 1] == "30"
    assert "--select-no-falls" in sure and sure[sure.index("--finetune") + 1] == "0.5"
    assert get("bpd-units-finetune-pairs-warmup-c50-visits-sure").select_episodes == 30
    # the c30 rows: the same at 0.3 of the bpd cell's cycles, the -dense one cutting whole units (--cut-dense)
    small = {"bench": {"integer": {"cycles": layers + 20.0, "instructions": 250, "flash_bytes": 2000}}}
    for name in ("bpd-units-finetune-pairs-warmup-c30-visits-sure",
                 "bpd-units-finetune-pairs-warmup-c30-visits-sure-dense"):
        c30 = get(name).command(replace(c, deps={"bpd": small}))  # 0.3 of it pays for the 20 around the layers
        assert float(c30[c30.index("--prune-to-cycles") + 1]) == pytest.approx(layers - 0.7 * (layers + 20))
        assert c30[:c30.index("--prune-to-cycles")] == sure[:sure.index("--prune-to-cycles")]
        assert ("--cut-dense" in c30) == name.endswith("-dense") and "--select-no-falls" in c30
    (cell / "export" / "policy.onnx").unlink()
    with pytest.raises(BpdError, match="no export measured with the integer kernel"):
        get("bpd-units-finetune-pairs-warmup-c50").command(c)


def test_every_ablation_trains_evaluates_and_tabulates_through_the_runner(tiny_pipeline, tmp_path):
    """Every method of the ablations plan, on a tiny budget, through `bpd experiment run` and `table`. The export
    and bench stages are left out (plan `bench: false`) to keep this within about two and a half minutes (it took
    seven with them, so it never ran); the runner's export and bench figures have their own tests in
    test_experiment.py. dense-small is sized from BPD's export, so it needs `bench: true`: its command is checked
    above (test_ablation_commands_take_their_size_from_the_bpd_cell)."""
    import json
    from pathlib import Path

    import yaml

    from bpd_app.experiment.plan import load_plan
    from tests.conftest import run_bpd
    from tests.test_experiment import TINY_DISTILL, _plan

    # the methods of the ablations, equal-cost and students plans: a method added there is run here
    plans = Path(__file__).resolve().parents[1] / "benchmarks" / "plans"
    plan_methods = (load_plan(plans / "ablations.yaml").methods | load_plan(plans / "hc-equal-cost.yaml").methods
                    | load_plan(plans / "students.yaml").methods)
    # dense-small and the cuts to the bpd cell's cycles need its export (and bench): their commands are checked
    # above (test_ablation_commands_take_their_size_from_the_bpd_cell, test_the_cycle_cuts_take_their_budget_...)
    ablations = [m for m in plan_methods if m not in ("bpd", "dense-small") and "-c50" not in m]
    plan = _plan(tmp_path, tiny_pipeline / "teacher.npz", {"bpd": {"args": TINY_DISTILL}}
                 | {m: {"args": TINY_DISTILL} for m in ablations})
    raw = yaml.safe_load(plan.read_text())
    raw["groups"] = {"Prior": ["bpd", "bpd-prior-uniform"], "Bayesian part": ["bpd", "magnitude-prune"]}
    plan.write_text(yaml.safe_dump(raw))
    runs = tmp_path / "runs"
    p = run_bpd("experiment", "run", str(plan), "--runs", str(runs), "--workers", "2", check=False, timeout=900)
    assert p.returncode == 0, p.stdout + p.stderr
    cell = lambda m, f: json.loads((runs / "InvertedPendulum-v5" / m / "seed0" / f).read_text())
    res = {m: cell(m, "result.json") for m in ["bpd", *ablations]}
    for m, r in res.items():
        assert r["eval"]["return_mean"] > 0 and 0 < r["params_nonzero"] <= r["params_total"], m
    # pruned to BPD's count; the units left without inputs or outputs then go, with their weights
    assert f"--prune-to {res['bpd']['params_nonzero']} " in cell("magnitude-prune", "cell.json")["commands"][0]
    assert res["magnitude-prune"]["params_nonzero"] <= res["bpd"]["params_nonzero"]
    assert res["bpd-prior-uniform"]["params_nonzero"] == res["bpd-prior-uniform"]["params_total"]
    assert "no sparsity by construction" in res["bpd-prior-uniform"]["train"]["pruning_rule"]
    assert res["bpd-no-value"]["train"]["seconds"] > 0
    # BPD at L1's cost: cut to the l1 cell's SMLADs, its partners filled (as many SMLADs, more weights)
    assert "--prune-to-pairs " in cell("bpd-finetune-l1-cycles", "cell.json")["commands"][0]
    for m in ("bpd-units-finetune-pairs", "bpd-finetune-l1-cycles"):  # partners: chosen by what the DSP kernel pays
        assert "multiply-adds of the DSP integer kernel" in res[m]["train"]["selection_rule"], m
    assert "fewest nonzero parameters" in res["bpd-finetune"]["train"]["selection_rule"]
    assert "--prune-fraction 0.5" in cell("bpd-units-finetune-pairs-half", "cell.json")["commands"][0]
    run_bpd("experiment", "table", str(plan), "--runs", str(runs), "--out", str(tmp_path / "table"))
    md = (tmp_path / "table" / "table.md").read_text()
    assert "## Summary" in md and "## Prior" in md and "## Bayesian part" in md
    assert "none (flat prior: no sparsity by construction)" in md


@pytest.mark.parametrize("groups, message", [
    ("{Prior: [bpd, nope]}", "group 'Prior' names labels that are not in methods: nope"),
    ("[bpd]", "groups maps a table name to a list"),
])
def test_bad_plan_groups_are_one_line_errors(tmp_path, groups, message):
    from bpd_app.experiment.plan import load_plan

    p = tmp_path / "plan.yaml"
    p.write_text(f"envs: [A]\nseeds: [0]\nteachers: {{A: t.npz}}\nmethods: [bpd]\ngroups: {groups}\n")
    with pytest.raises(BpdError, match=message):
        load_plan(p)


def test_plan_groups_are_read():
    from pathlib import Path

    from bpd_app.experiment.plan import load_plan

    plan = load_plan(Path(__file__).resolve().parents[1] / "benchmarks" / "plans" / "ablations.yaml")
    assert set(plan.groups) == {"Bayesian part", "KL schedule", "Prior", "Value term", "Fine-tune and unit pruning"}
    assert all("bpd" in labels for labels in plan.groups.values())
    assert {l for labels in plan.groups.values() for l in labels} == set(plan.methods)
    assert plan.methods["magnitude-prune"].needs == {"bpd": "bpd"}


@pytest.mark.parametrize(("plan_name", "reference"), [("retrain", "ablations"), ("control", "baselines"),
                                                         ("hc-l1", "hc-equal-cost")])
def test_retrained_cells_run_under_their_reference_plans_specification(plan_name, reference):
    """The plans that train a grid's cells again (on another machine, or after their models were lost)
    are worth reading beside the reference only while every shared cell's specification digest is the
    reference plan's own."""
    from pathlib import Path

    from bpd_app.experiment.plan import _digest, cell_spec, load_plan

    plans = Path(__file__).resolve().parents[1] / "benchmarks" / "plans"
    plan, ref = load_plan(plans / f"{plan_name}.yaml"), load_plan(plans / f"{reference}.yaml")
    ref_cells = {(c.env, c.label, c.seed): c for c in ref.cells()}
    shared = [c for c in plan.cells() if (c.env, c.label, c.seed) in ref_cells]
    assert shared and len(shared) == len(plan.cells())
    for c in shared:
        assert _digest(cell_spec(plan, c)) == _digest(cell_spec(ref, ref_cells[(c.env, c.label, c.seed)])), c


def test_the_l1_plan_is_the_ablations_row_on_the_delivery_plans_data():
    """The l1 plan's students are set against the delivered ones of every task: each of its cells must be the
    ablations' l1-threshold cell where that plan has the task, and the delivery plan's `bpd` cell of the same task and
    seed (teacher, data, budget, reporting episodes) in everything but the method."""
    from pathlib import Path

    from bpd_app.experiment.plan import _digest, cell_spec, load_plan

    plans = Path(__file__).resolve().parents[1] / "benchmarks" / "plans"
    plan, abl, dlv = (load_plan(plans / f"{n}.yaml") for n in ("l1", "ablations", "delivery"))
    abl_cells = {(c.env, c.label, c.seed): c for c in abl.cells()}
    bpd_cells = {(c.env, c.seed): c for c in dlv.cells() if c.label == "bpd"}
    shared = 0
    for c in plan.cells():
        spec = cell_spec(plan, c)
        if (c.env, c.label, c.seed) in abl_cells:
            shared += 1
            assert _digest(spec) == _digest(cell_spec(abl, abl_cells[(c.env, c.label, c.seed)])), c
        ref = cell_spec(dlv, bpd_cells[(c.env, c.seed)])
        assert spec | {"label": "bpd", "method": "bpd"} == ref, c
    assert shared == 6 and len(plan.cells()) == 9  # the double pendulum and Hopper in both; Walker2d in neither


def test_the_delivery_plans_reference_cells_are_the_students_plans_bpd_cells():
    """The delivery plan sets its candidates against its own `bpd` cells, trained on the same kind of machine: those
    count as the benchmark's BPD students only while their specification is the students plan's `bpd` row's."""
    from pathlib import Path

    from bpd_app.experiment.plan import _digest, cell_spec, load_plan

    plans = Path(__file__).resolve().parents[1] / "benchmarks" / "plans"
    plan, ref = load_plan(plans / "delivery.yaml"), load_plan(plans / "students.yaml")
    ref_cells = {(c.env, c.label, c.seed): c for c in ref.cells()}
    mine = [c for c in plan.cells() if c.label == "bpd"]
    assert len(mine) == len(plan.envs) * len(plan.seeds) == 12
    for c in mine:
        assert _digest(cell_spec(plan, c)) == _digest(cell_spec(ref, ref_cells[(c.env, c.label, c.seed)])), c


def test_the_delivery_plans_other_methods_are_sized_on_the_cut_row_and_never_delivered():
    """The rows set against the delivered student (magnitude pruning, the dense network of equal nonzero) are
    another method's, so delivered.py never delivers them, and each is sized on the -c50-visits-sure cell of its
    task and seed."""
    from pathlib import Path

    from bpd_app.experiment.plan import is_bpd, load_plan

    plan = load_plan(Path(__file__).resolve().parents[1] / "benchmarks" / "plans" / "delivery.yaml")
    rivals = {label: m for label, m in plan.methods.items() if not is_bpd(m.method)}
    assert {label: m.method for label, m in rivals.items()} == {"magnitude-prune-c50": "magnitude-prune",
                                                                "dense-nonzero-c50": "dense-nonzero"}
    assert all(m.needs == {"bpd": "bpd-units-finetune-pairs-warmup-c50-visits-sure"} for m in rivals.values())


def test_the_hopper_dense_plan_is_the_delivery_plans_hopper_cells_with_the_dense_network_at_their_budget():
    """hopper-dense.yaml trains again, on one kind of machine, the delivery plan's Hopper `bpd` and -c50-visits-sure
    cells (the same specifications) beside dense-c50, which is sized against its `bpd` cell, and the three rows at
    0.3 of its cycles; hc-dense.yaml the same rows at 0.3 on HalfCheetah beside its `bpd` cells."""
    from pathlib import Path

    from bpd_app.experiment.plan import _digest, cell_spec, load_plan

    plans = Path(__file__).resolve().parents[1] / "benchmarks" / "plans"
    plan, dlv = load_plan(plans / "hopper-dense.yaml"), load_plan(plans / "delivery.yaml")
    theirs = {(c.label, c.seed): _digest(cell_spec(dlv, c)) for c in dlv.cells() if c.env == "Hopper-v5"}
    mine = {(c.label, c.seed): _digest(cell_spec(plan, c)) for c in plan.cells()}
    new = {"dense-c50", "dense-c30", "bpd-units-finetune-pairs-warmup-c30-visits-sure",
           "bpd-units-finetune-pairs-warmup-c30-visits-sure-dense"}
    assert {k for k in mine if k[0] not in new} == {(label, s) for label in
                                                    ("bpd", "bpd-units-finetune-pairs-warmup-c50-visits-sure")
                                                    for s in (0, 1, 2)}
    assert all(mine[k] == theirs[k] for k in mine if k[0] not in new)
    assert all(plan.methods[m].method == m for m in new) and plan.seeds == dlv.seeds
    # hc-dense: the same rows at 0.3 on HalfCheetah, its `bpd` cells the delivery plan's specification
    hc = load_plan(plans / "hc-dense.yaml")
    hc_theirs = {(c.label, c.seed): _digest(cell_spec(dlv, c)) for c in dlv.cells() if c.env == "HalfCheetah-v5"}
    assert all(_digest(cell_spec(hc, c)) == hc_theirs[(c.label, c.seed)] for c in hc.cells() if c.label == "bpd")
    assert set(hc.methods) == {"bpd", "dense-c30-sure", "dense-c50-sure",
                               "bpd-units-finetune-pairs-warmup-c50-visits-sure"} | (new - {"dense-c50"})
    assert hc.envs == ["HalfCheetah-v5"]
    # loco-dense: its `bpd` and 0.3-noise c50 cut cells are the delivery plan's specifications of those rows
    loco = load_plan(plans / "loco-dense.yaml")
    lo_theirs = {(c.env, c.label, c.seed): _digest(cell_spec(dlv, c)) for c in dlv.cells()}
    same = [c for c in loco.cells() if c.label in ("bpd", "bpd-units-finetune-pairs-warmup-c50-visits-sure-noise0.3")]
    assert len(same) == 12 and all(_digest(cell_spec(loco, c)) == lo_theirs[(c.env, c.label, c.seed)] for c in same)
    assert {loco.methods[lab].method for lab in loco.methods} == {
        "bpd", "bpd-units-finetune-pairs-warmup-c50-visits-sure", "dense-c50-sure",
        "bpd-units-finetune-pairs-warmup-c30-visits-sure-dense", "dense-c30-sure"}
    # its c50 cut is the delivery plan's specification of that row (sized against its own `bpd` cells)
    assert all(_digest(cell_spec(hc, c)) == hc_theirs[(c.label, c.seed)] for c in hc.cells()
               if c.label == "bpd-units-finetune-pairs-warmup-c50-visits-sure")
