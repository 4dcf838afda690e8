"""Aggregates over seeds: plain mean, std and the worst seed beside the interquartile mean and its
bootstrap interval (rliable's), the bar a method meets, training stability."""

from __future__ import annotations

import numpy as np

from bpd_app.experiment.summary import _cycles


def _iqm(x: np.ndarray) -> float:
    """Interquartile mean as rliable computes it: the mean after cutting int(n/4) values from each end
    (scipy.stats.trim_mean with proportion 0.25). With 3 seeds nothing is cut: it is the mean."""
    x = np.sort(np.asarray(x, dtype=float))
    if len(x) == 0:
        return float("nan")
    k = int(0.25 * len(x))
    return float(x[k:len(x) - k].mean())


def _bootstrap_ci(x: np.ndarray, stat=_iqm, reps: int = 2000, seed: int = 0) -> tuple[float, float]:
    x = np.asarray(x, dtype=float)
    if len(x) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    vals = [stat(x[rng.integers(0, len(x), len(x))]) for _ in range(reps)]
    return float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))


BAR = {"return_vs_teacher_mean": 0.95, "weights_removed": 0.95, "return_vs_teacher_worst": 0.90}


def aggregate(rows: list[dict]) -> list[dict]:
    """One row per (environment, method label): spread over seeds, the worst seed, IQM and its CI."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["env"], r["label"]), []).append(r)
    out = []
    for (env, label), rs in groups.items():
        done = [r["result"] for r in rs if r["result"]]
        agg = {"env": env, "label": label, "seeds": len(rs), "done": len(done),
               "failed": sum(r["state"] == "failed" for r in rs),
               "pending": sum(r["state"] not in ("done", "failed") for r in rs)}
        if done:
            rets = np.array([d["eval"]["return_mean"] for d in done])
            rel = np.array([d["return_vs_teacher"] for d in done if d["return_vs_teacher"] is not None])
            nz = np.array([d["params_nonzero"] for d in done])
            removed = [d["weights_removed_vs_teacher"] for d in done if d["weights_removed_vs_teacher"] is not None]
            worst = int(np.argmin(rets))
            d4 = [d["d4rl_score"] for d in done if d["d4rl_score"] is not None]
            secs = [d["train"]["seconds"] for d in done if d["train"]["seconds"] is not None]
            bench = [d["bench"] for d in done if d.get("bench")]
            widths = sorted({"-".join(map(str, d["export"]["widths"])) for d in done if d.get("export")})
            agg.update({
                "teacher_return": done[0]["teacher"]["return_mean"],
                "teacher_returns": sorted({d["teacher"]["return_mean"] for d in done
                                           if d["teacher"]["return_mean"] is not None}),
                "teacher_params": done[0]["teacher"]["params_total"],
                "return_mean": float(rets.mean()), "return_std": float(rets.std()),
                "return_worst": float(rets[worst]), "worst_seed": done[worst]["seed"],
                "return_iqm": _iqm(rets), "return_iqm_ci": _bootstrap_ci(rets),
                "vs_teacher_mean": float(rel.mean()) if len(rel) else None,
                "vs_teacher_worst": float(rel.min()) if len(rel) else None,
                "d4rl_mean": float(np.mean(d4)) if d4 else None, "d4rl_std": float(np.std(d4)) if d4 else None,
                "d4rl_worst": float(np.min(d4)) if d4 else None,
                "nonzero_mean": float(nz.mean()), "nonzero_min": int(nz.min()), "nonzero_max": int(nz.max()),
                "weights_removed_mean": float(np.mean(removed)) if removed else None,
                "weights_removed_min": float(np.min(removed)) if removed else None,
                "widths": widths,
                "early_where_teacher_finished": int(sum(d["early_terminations_where_teacher_finished"] for d in done)),
                "episodes": int(sum(d["eval"]["episodes"] or 0 for d in done)),
                "instructions": [b["instructions"] for b in bench] or None,
                "cycles": [_cycles(b) for b in bench if _cycles(b) is not None] or None,
                "integer_cycles": [b["integer"]["cycles"] for b in bench if b.get("integer")] or None,
                "bench_kernels": sorted({b.get("kernel") or "bpd" for b in bench}),
                "policy_bytes": [b["policy_bytes"] for b in bench] or None,
                "policy_ram_bytes": [b["policy_ram_bytes"] for b in bench
                                     if b.get("policy_ram_bytes") is not None] or None,
                "weights_flash_bytes": [b["weights_flash_bytes"] for b in bench] or None,
                "seconds_median": float(np.median(secs)) if secs else None,
                "us_estimate": [b.get("us_estimate") for b in bench if b.get("us_estimate") is not None] or None,
                "pruning_rule": next((d["train"].get("pruning_rule") for d in done if d["train"].get("pruning_rule")),
                                     None),
                "removed_vs_student_min": min([1 - d["params_nonzero"] / d["params_total"] for d in done
                                               if d.get("params_total")], default=None),
                "sparsity_mean": _mean_or_none([1 - d["params_nonzero"] / d["params_total"] for d in done
                                                if d.get("params_total")]),
                "vs_teacher_std": float(rel.std()) if len(rel) else None,
                "last_evals_spread": _mean_or_none([float(np.std(d["train"]["last_evals"])) / abs(done[0]["teacher"]
                                                    ["return_mean"]) for d in done if d["train"].get("last_evals")
                                                    and done[0]["teacher"]["return_mean"]]),
                "largest_drop": _mean_or_none([x for d in done if (x := largest_drop(
                    d["train"].get("curve"), d["teacher"]["return_mean"])) is not None]),
                "per_seed": [{"seed": d["seed"], "return": d["eval"]["return_mean"],
                              "vs_teacher": d["return_vs_teacher"], "nonzero": d["params_nonzero"],
                              "early": d["early_terminations_where_teacher_finished"],
                              "kernels": kernel_kind(d)}
                             for d in done],
            })
            agg["meets_bar"] = bool(
                agg["done"] == agg["seeds"] and agg["vs_teacher_mean"] is not None
                and agg["vs_teacher_mean"] >= BAR["return_vs_teacher_mean"]
                and agg["vs_teacher_worst"] >= BAR["return_vs_teacher_worst"]
                and agg["weights_removed_min"] is not None and agg["weights_removed_min"] >= BAR["weights_removed"]
                and agg["early_where_teacher_finished"] == 0)
            # a seed that already breaks a per-seed part of the bar settles it; otherwise it waits for the rest
            settled_miss = (agg["vs_teacher_worst"] is not None
                            and agg["vs_teacher_worst"] < BAR["return_vs_teacher_worst"]
                            or agg["weights_removed_min"] is not None
                            and agg["weights_removed_min"] < BAR["weights_removed"]
                            or agg["early_where_teacher_finished"] > 0)
            agg["bar"] = ("meets" if agg["meets_bar"] else "misses" if settled_miss or agg["done"] == agg["seeds"]
                          else f"open ({agg['done']} of {agg['seeds']} seeds)")
        out.append(agg)
    return out


def _mean_or_none(xs: list[float]) -> float | None:
    return float(np.mean(xs)) if xs else None


def kernel_kind(result: dict) -> str | None:
    """The kind of torch CPU kernel a cell's summary records (None for summaries older than the record)."""
    return (result.get("machine") or {}).get("torch_cpu_capability")


def largest_drop(curve: dict | None, teacher_return: float | None) -> float | None:
    """Training stability of one run: the largest fall of its periodic evaluation return below the best
    seen so far, over the second half of training, as a share of the teacher's return."""
    if not curve or not curve.get("return") or not teacher_return:
        return None
    steps, rets = np.asarray(curve["step"], float), np.asarray(curve["return"], float)
    best = np.maximum.accumulate(rets)
    late = steps >= steps.max() / 2
    return float((best - rets)[late].max() / abs(teacher_return))
