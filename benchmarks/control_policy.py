"""Which policy should drive the data? Czarnecki et al.'s control-policy comparison on our tasks.

    python benchmarks/control_policy.py benchmarks/plans/baselines.yaml [--runs DIR] [--rig desktop-cartpole]

The same update rule (teacher-distill: the cross-entropy of the student's Gaussian against the
teacher's) is trained with the data driven by the teacher (offline dataset), the student
(on-policy-distill, DAgger-style: the student acts, the teacher labels), a teacher-to-student mix
(control-mixed) or uniform random actions (control-uniform), pruned to BPD's nonzero count (and,
where the plan has them, dense at BPD's collapsed widths) at the same environment and gradient
budgets. For each finished cell of the plan it reports:
  visited spread    per-dimension std of the states the control policy visited, in units of the
                    teacher dataset's (1.0: as spread as the teacher's data), from the run's buffer
  nominal           the cell's own evaluation on the plan's reporting episodes
  randomised        the plan's reporting episodes (or --episodes of them) with each episode's plant
                    drawn from a rig's domain randomisation (`bpd evaluate --randomize RIG`: masses,
                    friction, motor gain; the desktop cart-pole's ranges by default), the teacher
                    and BPD's student alongside (the teacher's nominal return measured at the same time,
                    so that its ratio does not mix machines)
The randomised evaluation of each cell is kept with the committed results (robust/<env>/<label>/
seed<N>.<rig>.json), keyed by the cell's specification digest, the ranges, the episodes and the
model itself (the product's sha256 its summary records, or for older summaries its export hash): a
retrained cell is evaluated again, and a cell restored from its committed summary (its model gone
with a lost run root) is read from there. The teacher data's visited spread (BPD's row) is kept the
same way (robust/<env>/teacher-data.spread.json, keyed by the plan's dataset specification).

Writes benchmarks/results/<plan>/control.md, control.json and <env>.visited.png (the visited states
of each control policy on the first two principal axes of the teacher's data, first seed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bpd.errors import BpdError  # noqa: E402
from bpd.io import read_json, save_png, write_json, write_text  # noqa: E402
from bpd_app.experiment.plan import load_plan  # noqa: E402
from bpd_app.experiment.results import collect_results  # noqa: E402

# the rule whose control policy is compared; labels of the plan whose method is one of these, at
# BPD's nonzero count (no size argument) or dense at BPD's collapsed widths, are the rows, with bpd
# beside them
CONTROL_METHODS = ("teacher-distill", "on-policy-distill")
CONTROL_SIZES = ("pruned", "dense")


def size_of(m) -> str:
    return "-" if m.method == "bpd" else str(m.args.get("size", "pruned"))


def control_labels(plan) -> list[str]:
    return [lab for lab, m in plan.methods.items()
            if m.method == "bpd" or (m.method in CONTROL_METHODS and size_of(m) in CONTROL_SIZES)]


def policy_path(cell_dir: Path) -> Path:
    """The trained policy a cell evaluated: a baseline's policy.npz, or a bpd run directory."""
    p = cell_dir / "run" / "policy.npz"
    return p if p.is_file() else cell_dir / "run"


def _model_hash(model: Path) -> str:
    from bpd.io import sha256_file
    return sha256_file(model / "student.pt" if model.is_dir() else model)


def randomised_eval(model: Path, env: str, rig: str | None, episodes: int, seed: int, cache: Path | None,
                    spec_digest: str | None = None, model_id: str | None = None) -> dict | None:
    """`bpd evaluate --randomize rig` of one model (rig None: the nominal plant), cached in `cache` when
    given (see the module's notes); None for a model that is gone (a cell restored from its summary)
    and was never evaluated so. The cache is keyed on the model itself: `model_id` (a cell's export
    hash, which its summary keeps when the model is lost), else the model file's sha256."""
    from bpd_app.evaluate import EvaluateConfig, run_evaluate
    from firmware_host.rig import randomization

    name, ranges = randomization(rig) if rig is not None else (None, {})
    have_model = (model / "student.pt").is_file() if model.is_dir() else model.is_file()
    if model_id is None and have_model:
        model_id = _model_hash(model)
    key: dict = {"rig": name, "ranges": {k: list(v) for k, v in ranges.items()}, "episodes": episodes, "seed": seed,
                 "spec_digest": spec_digest, "model": model_id}
    old = read_json(cache) if cache is not None and cache.is_file() else {}
    if model_id is not None and old.get("key") == key:
        return old["eval"]
    if not have_model:
        return None
    ev = run_evaluate(EvaluateConfig(model=str(model), env=env, episodes=episodes, seed=seed, randomize=rig))
    if ev.get("early_terminations") is None:
        raise BpdError(f"{model}: the evaluation returned no episodes")
    ev = {k: ev[k] for k in ("return_mean", "return_std", "return_min", "early_terminations", "returns",
                             "terminated")}
    if cache is not None:
        write_json(cache, {"key": key, "eval": ev})
    return ev


def visited_states(cell_dir: Path, plan, env: str, control: str | None) -> np.ndarray | None:
    """The states the cell's control policy visited: the online run's buffer, or the teacher's dataset
    for a cell that learned from it; None where the buffer is gone (a restored cell)."""
    import torch

    ck = cell_dir / "run" / "checkpoint.pt"
    if ck.is_file():
        try:
            blob = torch.load(ck, weights_only=True, map_location="cpu")
        except Exception as e:  # a torn or foreign file: say which, in one line
            raise BpdError(f"{ck}: unreadable checkpoint ({type(e).__name__})") from None
        buf = blob.get("buffer")
        if buf is not None and len(buf):
            return buf.numpy()
    if control not in (None, "teacher"):
        return None
    ds = plan.dataset_path(env)
    if ds.is_file():
        from training.collect import load_dataset
        return load_dataset(ds).observations
    return None


def rows_of(plan, rig: str, rig_name: str, episodes: int, seed: int, out: Path) -> list[dict]:

    from training.baselines import visited_spread
    from training.collect import load_dataset

    labels = control_labels(plan)
    res = [r for r in collect_results(plan) if r["label"] in labels]
    rows = []
    for env in plan.envs:
        # BPD learns from the teacher's dataset: its spread, measured the same way, kept beside the
        # randomised evaluations (keyed by the dataset's specification) for when the run root is gone
        ds_spread, ds_cache = None, out / "robust" / env / "teacher-data.spread.json"
        if plan.dataset_path(env).is_file():
            ds = load_dataset(plan.dataset_path(env))
            ds_spread = visited_spread(ds.observations, ds.obs_mean, ds.obs_std)
            write_json(ds_cache, {"dataset": plan.dataset, "visited_spread": ds_spread})
        elif ds_cache.is_file() and (cached := read_json(ds_cache)).get("dataset") == plan.dataset:
            ds_spread = cached["visited_spread"]
        teacher = plan.teachers[env]
        tev = randomised_eval(Path(teacher), env, rig, episodes, seed,
                              out / "robust" / env / f"teacher.{rig_name}.json")
        if tev is None:
            raise BpdError(f"{plan.rel(teacher)}: no such teacher file")
        # its nominal return measured beside the randomised one (the cells' figure of it may come from
        # another machine, and the ratio of the two should not)
        tnom = randomised_eval(Path(teacher), env, None, episodes, seed, out / "robust" / env / "teacher.nominal.json")
        assert tnom is not None  # the teacher file is there: its randomised evaluation just ran
        rows.append({"env": env, "label": "teacher", "size": "-", "control": "-", "seeds": "-",
                     "nominal": [tnom["return_mean"]], "nominal_early": [tnom["early_terminations"]],
                     "randomised": [tev["return_mean"]], "randomised_early": [tev["early_terminations"]],
                     "randomised_worst_episode": [tev["return_min"]], "spread": [], "per_seed": []})
        for lab in labels:
            done = [r for r in res if r["env"] == env and r["label"] == lab and r["result"]]
            total = sum(1 for r in res if r["env"] == env and r["label"] == lab)
            row: dict = {"env": env, "label": lab, "size": size_of(plan.methods[lab]), "control": None,
                         "seeds": f"{len(done)}/{total}", "nominal": [],
                         "nominal_early": [], "randomised": [], "randomised_early": [],
                         "randomised_worst_episode": [], "spread": [], "per_seed": [], "unmeasured": []}
            for r in done:
                d, cdir = r["result"], plan.runs / env / lab / f"seed{r['seed']}"
                ev = randomised_eval(policy_path(cdir), env, rig, episodes, seed,
                                     out / "robust" / env / lab / f"seed{r['seed']}.{rig_name}.json",
                                     d.get("spec_digest"),
                                     d.get("product_sha256") or (d.get("export") or {}).get("model_hash"))
                row["nominal"].append(d["eval"]["return_mean"])
                row["nominal_early"].append(d["eval"]["early_terminations"])
                spread = (d.get("train") or {}).get("visited_spread")
                if spread is None and plan.methods[lab].method == "bpd":
                    spread = ds_spread
                if spread is not None:
                    row["spread"].append(spread)
                tr = d.get("train") or {}
                row["control"] = tr.get("control") or ("teacher" if plan.methods[lab].method == "bpd" else None)
                if ev is None:  # restored from its summary: the model went with the run root
                    row["unmeasured"].append(r["seed"])
                    continue
                row["randomised"].append(ev["return_mean"])
                row["randomised_early"].append(ev["early_terminations"])
                row["randomised_worst_episode"].append(ev["return_min"])
                row["per_seed"].append({"seed": r["seed"], "nominal": d["eval"]["return_mean"],
                                        "randomised": ev["return_mean"], "randomised_early": ev["early_terminations"],
                                        "visited_spread": spread,
                                        "params_nonzero": d["params_nonzero"]})
            rows.append(row)
    return rows


def _ms(xs: list[float], nd: int = 0, worst: bool = True) -> str:
    if not xs:
        return "-"
    if len(xs) == 1:
        return f"{xs[0]:,.{nd}f}"
    return f"{np.mean(xs):,.{nd}f} +- {np.std(xs):,.{nd}f}" + (f"; worst {min(xs):,.{nd}f}" if worst else "")


def markdown(plan, rows: list[dict], rig: str, episodes: int, seed: int) -> str:
    lines = [f"# {plan.name}: which policy drives the data (Czarnecki et al.'s control-policy comparison)", "",
             f"Plan `{plan.rel(plan.path)}`; regenerate with `python benchmarks/control_policy.py "
             f"{plan.rel(plan.path)}` after `bpd experiment run`. Rule: teacher-distill (cross-entropy against "
             "the teacher's Gaussian), pruned to the BPD cell's nonzero count or dense at its collapsed widths; "
             "teacher = the offline dataset, "
             "student / mixed / uniform = collected online, labelled by the teacher, same environment-step "
             "budget. bpd: BPD's student on the teacher's dataset, for reference.", "",
             f"Randomised: episodes {seed}..{seed + episodes - 1}, each plant drawn from the `{rig}` rig's "
             "domain randomisation (`bpd evaluate --randomize`), the same draw for every policy. Returns are "
             "mean +- std over seeds and the worst seed; early ends are summed over seeds. Visited spread: "
             "per-dimension std of the states visited, in units of the teacher data's. The teacher's nominal "
             "return is measured beside its randomised one, on the same machine and episodes.", ""]
    for env in plan.envs:
        lines += [f"## {env}", "",
                  "| policy | size | control | seeds | visited spread | nominal return | randomised return "
                  "| randomised / nominal | randomised early ends | worst randomised episode |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in (r for r in rows if r["env"] == env):
            nominal = [p["nominal"] for p in r["per_seed"]] or r["nominal"]  # the seeds measured both ways
            ratio = f"{np.mean(r['randomised']) / np.mean(nominal):.3f}" if nominal and r["randomised"] else "-"
            if r.get("unmeasured"):
                r["seeds"] += f" (randomised: seed {', '.join(map(str, r['unmeasured']))} not measured, its model lost)"
            n_ep = episodes * len(r["randomised"])
            early = f"{sum(r['randomised_early'])} of {n_ep}" if r["randomised"] else "-"
            worst = f"{min(r['randomised_worst_episode']):,.0f}" if r["randomised_worst_episode"] else "-"
            lines.append(f"| {r['label']} | {r['size']} | {r['control'] or '-'} | {r['seeds']} "
                         f"| {_ms(r['spread'], 2, worst=False)} | {_ms(r['nominal'], 1)} | {_ms(r['randomised'], 1)} "
                         f"| {ratio} | {early} | {worst} |")
        lines.append("")
    return "\n".join(lines)


def read_json_or_none(p: Path) -> dict | None:
    return read_json(p) if p.is_file() else None


def visited_plot(plan, env: str, labels: list[str], out: Path) -> str | None:
    """Visited states of the first seed of each control policy on the teacher data's two principal axes."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name = f"{env}.visited.png"
    kept = name if (out / name).is_file() else None  # drawn when every buffer was at hand
    ds = plan.dataset_path(env)
    if not ds.is_file():
        return kept
    from training.collect import load_dataset
    d = load_dataset(ds)
    z = (d.observations - d.obs_mean) / d.obs_std
    _, _, vt = np.linalg.svd(z - z.mean(0), full_matrices=False)
    axes = vt[:2].T
    drawn_from, lost = [], False
    for lab in labels:
        if plan.methods[lab].method == "bpd":
            continue
        finished = [(cdir, res) for s in plan.seeds
                    if (res := read_json_or_none(cdir := plan.runs / env / lab / f"seed{s}" / "result.json"))]
        if not finished:
            continue
        for result_path, res in finished:
            cdir = result_path.parent
            x = visited_states(cdir, plan, env, (res.get("train") or {}).get("control"))
            if x is not None:
                drawn_from.append((lab, cdir, x))
                break
        else:  # restored cells without their buffers
            lost = True
    if lost and kept:
        return kept
    if not drawn_from:
        return None
    fig, ax = plt.subplots(figsize=(6, 5))
    drawn = False
    for lab, cdir, x in drawn_from:
        p = ((x - d.obs_mean) / d.obs_std) @ axes
        p = p[np.random.default_rng(0).permutation(len(p))[:5000]]
        ax.scatter(p[:, 0], p[:, 1], s=2, alpha=0.3, label=f"{lab} ({cdir.name})")
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("principal axis 1 of the teacher's data")
    ax.set_ylabel("principal axis 2")
    ax.set_title(f"{env}: states visited by each control policy")
    ax.legend(fontsize=7, markerscale=4)
    save_png(fig, out / name)
    return name


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("plan")
    ap.add_argument("--runs", default=None, help="run root (default: as for `bpd experiment run`)")
    ap.add_argument("--out", default=None, help="output directory (default: benchmarks/results/<plan name>)")
    ap.add_argument("--rig", default="desktop-cartpole", help="the rig (name or YAML) whose domain randomisation "
                    "is drawn")
    ap.add_argument("--episodes", type=int, default=None, help="randomised episodes (default: the plan's eval)")
    a = ap.parse_args(argv)
    try:
        from firmware_host.rig import randomization

        if a.episodes is not None and a.episodes < 1:
            raise BpdError(f"--episodes must be at least 1 (got {a.episodes})")
        rig_name, _ = randomization(a.rig)
        plan = load_plan(a.plan, a.runs)
        episodes = a.episodes or int(plan.eval.get("episodes", 30))
        seed = int(plan.eval.get("seed", 0))
        out = Path(a.out) if a.out else plan.results_dir
        rows = rows_of(plan, a.rig, rig_name, episodes, seed, out)
        md = markdown(plan, rows, rig_name, episodes, seed)
        pngs = [p for env in plan.envs if (p := visited_plot(plan, env, control_labels(plan), out))]
        md += "\n" + "\n".join(f"![{p}]({p})" for p in pngs) + "\n"
        write_text(out / "control.md", md)
        write_json(out / "control.json", {"plan": plan.rel(plan.path), "rig": rig_name, "episodes": episodes,
                                          "seed": seed, "rows": rows})
    except BpdError as e:
        print(f"control_policy: error: {e}", file=sys.stderr)
        return 1
    print(out / "control.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
