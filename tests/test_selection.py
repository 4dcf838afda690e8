"""Which candidates a distillation run judges on the selection seeds: the shortlist by periodic return, and
every student of the fine-tune whatever its periodic return."""

import numpy as np
import pytest
import torch

from bpd.errors import BpdError
from training.selection import Candidate, finetuned, select
from training.student import BayesianStudent

META = {"obs_dim": 4, "act_dim": 1, "hidden": [4], "activation": "tanh", "threshold": 3.0, "log_alpha_clip": 8.0}
STATS = {"obs_mean": np.zeros(4, np.float32), "obs_std": np.ones(4, np.float32),
         "action_low": -3 * np.ones(1, np.float32), "action_high": 3 * np.ones(1, np.float32)}


def _student(frozen: bool, seed: int) -> BayesianStudent:
    torch.manual_seed(seed)
    s = BayesianStudent(4, 1, [4])
    with torch.no_grad():
        for layer in s.layers:
            layer.log_sigma2.fill_(-8.0)  # every weight kept
    if frozen:
        with torch.no_grad():
            for layer in s.layers:
                layer.freeze()
    return s


def test_finetuned_reads_the_frozen_layers_from_the_state_alone():
    assert not finetuned(_student(False, 0).state_dict())
    assert finetuned(_student(True, 0).state_dict())
    assert not finetuned({"weights.0": torch.zeros(2)})  # no variational layer at all: not a fine-tune's


def test_the_fine_tunes_candidates_are_judged_whatever_their_periodic_return():
    """Shortlist of 1 by periodic return: the variational candidate of step 20 (return 100) alone; the
    fine-tune's candidate of step 40 (periodic return 5, a noisy evaluation) is judged as well, and the
    variational one of step 30 (return 50) is not."""
    cands = [Candidate(20, 100.0, 29, _student(False, 1).state_dict()),
             Candidate(30, 50.0, 29, _student(False, 2).state_dict()),
             Candidate(40, 5.0, 29, _student(True, 3).state_dict())]
    out = select(cands, META, STATS, "InvertedPendulum-v5", 0, "sparsest-within", 0.02, 1, shortlist=1)
    assert [r["step"] for r in out["rows"]] == [20, 40]
    # without a shortlist every candidate is judged, once
    out = select(cands, META, STATS, "InvertedPendulum-v5", 0, "sparsest-within", 0.02, 1, shortlist=None)
    assert [r["step"] for r in out["rows"]] == [20, 30, 40]


def test_the_falls_check_sets_aside_a_candidate_that_ends_an_episode_the_teacher_finishes(monkeypatch):
    """Three episodes on the selection seeds; the teacher ends the second early. Step 20 has the best return but
    ends the first (the teacher finishes it): set aside. Step 30 ends only the second (the teacher's too): kept.
    Step 40 ends the first and the third. So `best` hands over step 20 without the check, step 30 with it; where
    every candidate falls, those with the fewest falls are judged (step 20 and 30 tie at one: the better return)."""
    import training.selection as sel
    from training.envs import Episodes

    def fake(outcomes):
        calls = iter(outcomes)
        return lambda env_id, act, episodes, seed: next(calls)

    teacher = Episodes([100.0, 10.0, 100.0], [1000, 50, 1000], [False, True, False], 0)
    s20 = Episodes([90.0, 95.0, 95.0], [400, 1000, 1000], [True, False, False], 0)
    s30 = Episodes([80.0, 10.0, 80.0], [1000, 40, 1000], [False, True, False], 0)
    s40 = Episodes([20.0, 50.0, 20.0], [30, 1000, 30], [True, False, True], 0)
    cands = [Candidate(20, 1.0, 29, _student(False, 1).state_dict()),
             Candidate(30, 1.0, 29, _student(False, 2).state_dict()),
             Candidate(40, 1.0, 29, _student(False, 3).state_dict())]
    args = (cands, META, STATS, "InvertedPendulum-v5", 0, "best", 0.02, 3, None)
    monkeypatch.setattr(sel, "rollouts", fake([s20, s30, s40]))
    assert select(*args)["chosen"]["step"] == 20
    monkeypatch.setattr(sel, "rollouts", fake([teacher, s20, s30, s40]))
    out = select(*args, teacher_act=lambda o: o, no_falls=True)
    assert [r["falls"] for r in out["rows"]] == [1, 0, 2]
    assert out["chosen"]["step"] == 30 and out["teacher_select_early_terminations"] == 1
    assert "teacher finishes" in out["rule"]
    s30_falls = Episodes([80.0, 10.0, 80.0], [1000, 40, 5], [False, True, True], 0)
    monkeypatch.setattr(sel, "rollouts", fake([teacher, s20, s30_falls, s40]))
    assert select(*args, teacher_act=lambda o: o, no_falls=True)["chosen"]["step"] == 20
    with pytest.raises(BpdError, match="needs the teacher"):
        select(*args, no_falls=True)
    # the teacher given (as distill always gives it) without the check or a target: not run (three rollouts only)
    monkeypatch.setattr(sel, "rollouts", fake([s20, s30, s40]))
    assert select(*args, teacher_act=lambda o: o)["chosen"]["step"] == 20
    # a keep-return target with the check: the target is judged among the fewest falls (step 30 at 80 % of the
    # teacher's 70 keeps 0.5 of it; step 20, cheaper by nothing, falls), and the teacher is run once
    monkeypatch.setattr(sel, "rollouts", fake([teacher, s20, s30, s40]))
    out = select(cands, META, STATS, "InvertedPendulum-v5", 0, "sparsest-within", 0.0, 3, None, keep_return=0.5,
                 teacher_act=lambda o: o, no_falls=True)
    assert out["chosen"]["step"] == 30 and out["keep_return_met"] and out["teacher_select_return"] == pytest.approx(70)
    # two thresholds a candidate: the rows, not the candidates, are what the pool indexes
    monkeypatch.setattr(sel, "rollouts", fake([teacher, s20, s40, s30, s40, s40, s40]))
    out = select(*args, teacher_act=lambda o: o, thresholds=[2.0, 3.0], no_falls=True)
    assert [r["falls"] for r in out["rows"]] == [1, 2, 0, 2, 2, 2]
    assert (out["chosen"]["step"], out["chosen"]["threshold"]) == (30, 2.0)


def test_confirm_judges_again_cheapest_first_and_stops_at_the_first_that_holds(monkeypatch):
    """Three more selection episodes from seed 500; the teacher (returns 100, 100, 100) ends the second early.
    'cheap' ends the first early (the teacher finishes it): fails. 'short' keeps 90 % of the teacher's return: fails
    the 99 % target. 'good' (99.33 %) ends only the second, as the teacher does: holds, and 'later' is never loaded."""
    import training.selection as sel
    from training.envs import Episodes

    outcomes = {"teacher": Episodes([100.0, 100.0, 100.0], [9, 3, 9], [False, True, False], 500),
                "cheap": Episodes([100.0, 100.0, 100.0], [2, 3, 9], [True, True, False], 500),
                "short": Episodes([90.0, 90.0, 90.0], [9, 9, 9], [False, False, False], 500),
                "good": Episodes([99.0, 99.0, 100.0], [9, 3, 9], [False, True, False], 500),
                "later": Episodes([100.0, 100.0, 100.0], [9, 9, 9], [False, False, False], 500)}

    def fake(env_id, policy, episodes, seed):
        assert (episodes, seed) == (3, 500)
        return outcomes[policy]

    loaded = []

    def loader(name):
        def load():
            loaded.append(name)
            return name
        return load

    monkeypatch.setattr(sel, "rollouts", fake)
    names = ["cheap", "short", "good", "later"]
    held, recs = sel.confirm("E", "teacher", [(n, loader(n)) for n in names], 500, 3, 0.99)
    assert held == 2 and loaded == ["cheap", "short", "good"]
    assert [r["holds"] for r in recs] == [False, False, True]
    assert [r["early_ends_where_teacher_finished"] for r in recs] == [1, 0, 0]
    assert recs[1]["return"] == pytest.approx(90.0) and recs[1]["teacher_return"] == pytest.approx(100.0)
    assert recs[2]["first_seed"] == 500 and recs[2]["episodes"] == 3
    loaded.clear()
    held, recs = sel.confirm("E", "teacher", [(n, loader(n)) for n in ["cheap", "short"]], 500, 3, 0.99)
    assert held is None and len(recs) == 2 and loaded == ["cheap", "short"]
    # with a low share of 0.5, 'flip' (one finished episode at 10, its mean 100 still above 99 % of the teacher's)
    # falls there and 'later' holds; without it 'flip' holds
    outcomes["flip"] = Episodes([10.0, 100.0, 190.0], [9, 3, 9], [False, True, False], 500)
    held, recs = sel.confirm("E", "teacher", [(n, loader(n)) for n in ["flip", "later"]], 500, 3, 0.99,
                             low_share=0.5)
    assert held == 1 and recs[0]["low_episodes"] == 1 and recs[0]["early_ends_where_teacher_finished"] == 0
    assert sel.confirm("E", "teacher", [("flip", loader("flip"))], 500, 3, 0.99)[0] == 0


def test_compress_confirm_hands_over_the_first_that_holds_else_the_fewest_falls(monkeypatch, tmp_path):
    """compress's --confirm: the ranked students (kept, fewest selection falls, cheapest first) judged again from
    the seed after the longest selection any run made (a run that judged on 30: seed base + 30); the first that
    holds is handed over; none: the fewest falls there, then the higher return."""
    import json

    import training.selection as sel
    import training.teacher as teacher_mod
    from bpd_app.compress import CompressConfig, confirm_run
    from training.envs import select_eval_seed

    def row(m, cost, kept, falls, select_episodes):
        run = tmp_path / m
        run.mkdir(exist_ok=True)
        (run / "config.json").write_text(json.dumps({"select_episodes": select_episodes}))
        return {"method": m, "run": str(run), "student": str(run / "selected.pt"), "cost": cost,
                "select_return": 100.0, "keep_return_met": kept, "falls": falls}

    rows = [row("a", 10, True, 0, 10), row("b", 5, True, 1, 10), row("c", 20, True, 0, 30), row("d", 1, False, 0, 10)]
    seen = {}

    def fake_confirm(env, teacher_act, students, seed, episodes, keep, log=None, low_share=0.0):
        seen.update(names=[n for n, _ in students], seed=seed, episodes=episodes, low_share=low_share)
        recs = [{"return": r, "teacher_return": 100.0, "early_ends_where_teacher_finished": f, "episodes": episodes,
                 "first_seed": seed, "holds": h} for r, f, h in seen["outcomes"]]
        held = next((i for i, (_, _, h) in enumerate(seen["outcomes"]) if h), None)
        return held, recs

    monkeypatch.setattr(sel, "confirm", fake_confirm)
    monkeypatch.setattr(teacher_mod, "load_teacher", lambda path: type("T", (), {"act": None})())
    cfg = CompressConfig(teacher="t.npz", dataset="d.npz", confirm=20, seed=1)
    seen["outcomes"] = [(100.0, 1, False), (99.5, 0, True)]
    best, held = confirm_run(cfg, "E", rows)
    assert seen["names"] == ["a", "c"] and seen["seed"] == select_eval_seed(1) + 30 and seen["episodes"] == 20
    assert seen["low_share"] == 0.5  # an episode at less than half the teacher's return is a fall by default
    assert held is True and best["method"] == "c" and rows[0]["confirm"]["holds"] is False
    seen["outcomes"] = [(100.0, 2, False), (98.0, 1, False)]
    best, held = confirm_run(cfg, "E", rows)
    assert held is False and best["method"] == "c"
    seen["outcomes"] = [(99.0, 1, False), (98.0, 1, False)]
    assert confirm_run(cfg, "E", rows)[0]["method"] == "a"


def test_a_low_return_episode_the_teacher_finishes_is_a_fall_with_a_low_share():
    """Teacher returns 100, -200, 50 (the third ended early); share 0.5: low below 100 - 50 = 50 on the first
    seed and below -200 - 100 = -300 on the second (a negative return, judged by its magnitude); the third, which
    the teacher ended early, never counts; an episode the student ended early is an early end, not a low one."""
    from training.envs import Episodes, early_where_teacher_finished, fall_episodes, low_where_teacher_finished

    teacher = Episodes([100.0, -200.0, 50.0], [1000, 1000, 20], [False, False, True], 0)
    st = Episodes([49.9, -299.0, -999.0], [1000, 1000, 5], [False, False, True], 0)
    assert low_where_teacher_finished(st, teacher, 0.5) == 1
    assert low_where_teacher_finished(st, teacher, 0.0) == 0  # early ends alone
    assert fall_episodes(st, teacher, 0.5) == [0] and fall_episodes(st, teacher, 0.0) == []
    st = Episodes([50.0, -301.0, 0.0], [1000, 1000, 1000], [False, False, False], 0)
    assert low_where_teacher_finished(st, teacher, 0.5) == 1
    assert fall_episodes(st, teacher, 0.5) == [1]
    st = Episodes([20.0, -150.0, 0.0], [10, 1000, 1000], [True, False, False], 0)
    assert low_where_teacher_finished(st, teacher, 0.5) == 0
    assert early_where_teacher_finished(st.terminated, teacher.terminated) == 1
    assert fall_episodes(st, teacher, 0.5) == fall_episodes(st, teacher, 0.0) == [0]  # the early end, both ways


def test_the_low_share_sets_aside_a_candidate_that_flips_on_one_episode(monkeypatch):
    """Nothing ends early. Step 20 scores best on average but runs one episode at 10 % of the teacher's (a flip):
    with the early-end check alone it is handed over, with a low share of 0.5 step 30 (no such episode) is."""
    import training.selection as sel
    from training.envs import Episodes

    def fake(outcomes):
        calls = iter(outcomes)
        return lambda env_id, act, episodes, seed: next(calls)

    teacher = Episodes([100.0, 100.0, 100.0], [1000] * 3, [False] * 3, 0)
    s20 = Episodes([130.0, 130.0, 10.0], [1000] * 3, [False] * 3, 0)
    s30 = Episodes([85.0, 85.0, 85.0], [1000] * 3, [False] * 3, 0)
    cands = [Candidate(20, 1.0, 29, _student(False, 1).state_dict()),
             Candidate(30, 1.0, 29, _student(False, 2).state_dict())]
    args = (cands, META, STATS, "InvertedPendulum-v5", 0, "best", 0.02, 3, None)
    monkeypatch.setattr(sel, "rollouts", fake([teacher, s20, s30]))
    assert select(*args, teacher_act=lambda o: o, no_falls=True)["chosen"]["step"] == 20
    monkeypatch.setattr(sel, "rollouts", fake([teacher, s20, s30]))
    out = select(*args, teacher_act=lambda o: o, no_falls=True, low_share=0.5)
    assert [r["falls"] for r in out["rows"]] == [1, 0] and out["chosen"]["step"] == 30
    assert "minus 50% of its magnitude" in out["rule"]


def test_a_low_share_needs_the_falls_check():
    import argparse

    from bpd.config import add_arguments, from_namespace
    from training.distill_config import DistillConfig, _check_config
    from training.selection import SelectConfig, run_select

    def parse(cls, *argv):
        ap = argparse.ArgumentParser()
        add_arguments(ap, cls)
        return from_namespace(cls, ap.parse_args(list(argv)))

    base = ["--teacher", "t.npz", "--dataset", "d.npz"]
    assert parse(DistillConfig, *base, "--select-no-falls", "--select-low-share", "0.5").select_low_share == 0.5
    with pytest.raises(BpdError, match="needs --select-no-falls"):
        _check_config(parse(DistillConfig, *base, "--select-low-share", "0.5"))
    with pytest.raises(BpdError, match="give --no-falls too"):
        run_select(parse(SelectConfig, "run", "--low-share", "0.5"))


def test_compress_cautions_the_user_when_no_candidate_held_with_the_fall_rate_and_its_chance_on_30():
    """Handed over unconfirmed: 3 early ends and 1 low episode in 200 further ones are 2.0 %, at which 30 episodes
    pass clean with probability 0.98^30 = 0.55; confirmed, or not judged again (--confirm 0): no caution; no fall but
    a return short of the share asked: the return is named."""
    from bpd_app.compress import caution

    rows = [{"method": "a", "confirm": {"early_ends_where_teacher_finished": 5, "low_episodes": 0, "episodes": 200,
                                        "return": 100.0, "teacher_return": 100.0}},
            {"method": "dense-c50", "confirm": {"early_ends_where_teacher_finished": 3, "low_episodes": 1,
                                                "episodes": 200, "return": 99.5, "teacher_return": 100.0}}]
    line = caution({"confirmed": False, "chosen": "dense-c50", "rows": rows, "keep_return": 0.99})
    assert line == ("caution: no candidate held on the 200 further selection episodes; dense-c50, handed over, fell "
                    "on 4 of them (2.0 %): at that rate 30 episodes pass without a fall with probability 0.55. Judge "
                    "it on your plant before relying on it.")
    assert caution({"confirmed": True, "chosen": "dense-c50", "rows": rows}) is None
    assert caution({"confirmed": None, "chosen": "dense-c50", "rows": rows}) is None
    # no fall but the return short of the 99 % asked (98.0 against 100.0): the return is the reason, no fall odds
    short = [{"method": "a", "confirm": {"early_ends_where_teacher_finished": 0, "low_episodes": 0, "episodes": 200,
                                         "return": 98.0, "teacher_return": 100.0}}]
    assert caution({"confirmed": False, "chosen": "a", "rows": short, "keep_return": 0.99}) == (
        "caution: no candidate held on the 200 further selection episodes; a, handed over, returned 98.0 there "
        "against the teacher's 100.0, below the 99 % asked. Judge it on your plant before relying on it.")


def test_compress_cautions_the_user_when_no_method_kept_the_return():
    """No method's student kept 99 % on the selection seeds (nothing judged again: confirmed None): compress hands
    over the highest return, 184.7 against the teacher's 9328.1 (2.0 %), and says so on its caution line; before,
    the caution came only where students kept it and none held on the further episodes, so a student at 2 % of the
    teacher was handed over with no word but a clause of the markdown's rule."""
    from bpd_app.compress import caution

    rows = [{"method": "bpd", "select_return": 171.1, "teacher_select_return": 9328.1, "falls": 2,
             "keep_return_met": False},
            {"method": "l1-threshold", "select_return": 184.7, "teacher_select_return": 9328.1, "falls": 2,
             "keep_return_met": False}]
    res = {"kept": False, "confirmed": None, "chosen": "l1-threshold", "rows": rows, "keep_return": 0.99}
    assert caution(res) == ("caution: no method's student kept 99 % of the teacher's return on the selection seeds; "
                            "l1-threshold, handed over, returned 184.7 there against the teacher's 9328.1 (2.0 %), "
                            "2 falls there. Judge it on your plant before relying on it, or train longer or with "
                            "more data.")
    assert caution(res | {"kept": True}) is None  # kept, nothing judged again (--confirm 0): no caution
    # one kept it but fell more often (the falls come first): the line does not say that none kept it
    rows[0] |= {"keep_return_met": True, "falls": 3, "select_return": 9300.0}
    assert caution(res) == ("caution: no method's student with the fewest falls kept 99 % of the teacher's return on "
                            "the selection seeds (bpd kept it, falling more often); l1-threshold, handed over, "
                            "returned 184.7 there against the teacher's 9328.1 (2.0 %), 2 falls there. Judge it on "
                            "your plant before relying on it, or train longer or with more data.")


def test_select_prints_its_cost_in_the_unit_cost_names(capsys):
    """`bpd student select --cost m4f-cycles` names what its cost counts and that it is its meter's estimate before
    export (the export measures the kernel it ships, another tanh form or calibration); without --cost, no cost."""
    from training.cli import report_select

    ch = {"step": 18000, "threshold": 3.0, "params_nonzero": 75, "cost": 355.0, "select_return": 1000.0}
    r = {"out": "runs/student/selected.pt", "chosen": ch, "teacher_select_return": 1000.0, "keep_return_met": True,
         "rows": [], "rule": "x", "cost": "m4f-cycles"}
    report_select(r)
    assert ("cost 355 est. Cortex-M4F cycles (select's meter, before export), return 1000.0"
            in capsys.readouterr().out)
    report_select(r | {"cost": "smlad"})
    assert "cost 355 DSP multiply-adds (SMLADs), return" in capsys.readouterr().out
    report_select(r | {"cost": None, "chosen": {k: v for k, v in ch.items() if k != "cost"}})
    assert "75 nonzero, return 1000.0 vs teacher" in capsys.readouterr().out
    report_select(r | {"chosen": ch | {"cost_kernel": "compact-table", "cost_target": "cortex-m4f"}})
    assert ("cost 355 est. Cortex-M4F cycles of the compact-table kernel on cortex-m4f (select's meter, before "
            "export), return 1000.0" in capsys.readouterr().out)


def test_a_negative_return_keeps_its_share_by_its_magnitude():
    """Pendulum-v1's returns are costs (the teacher's -1000): keeping 99 % is at most 1 % of 1,000 below it, -1010;
    99 % of -1000 (-990) would have asked a student to beat the teacher by 1 % and refused one better by less. A
    positive return keeps its plain share (990 of 1000)."""
    from training.envs import return_floor, share_of_teacher
    from training.selection import choose

    assert return_floor(1000.0, 0.99) == pytest.approx(990.0)
    assert return_floor(-1000.0, 0.99) == pytest.approx(-1010.0)
    assert return_floor(-1000.0, 1.05) == pytest.approx(-950.0)  # compress takes up to 2: 5 % better than the teacher
    assert share_of_teacher(990.0, 1000.0) == pytest.approx(0.99)
    assert share_of_teacher(-1010.0, -1000.0) == pytest.approx(0.99)
    assert share_of_teacher(-900.0, -1000.0) == pytest.approx(1.1)
    assert share_of_teacher(5.0, 0.0) is None
    rows = [{"select_return": -1020.0, "params_nonzero": 10, "cost": 1.0},   # 2 % below: not kept
            {"select_return": -995.0, "params_nonzero": 30, "cost": 3.0},    # better than the teacher
            {"select_return": -1009.0, "params_nonzero": 20, "cost": 2.0}]   # 0.9 % below: kept, the cheapest kept
    assert choose(rows, "sparsest-within", 0.0, 0.99, -1000.0) == (2, True)
    assert choose(rows[:1], "sparsest-within", 0.0, 0.99, -1000.0) == (0, False)
    # the positive case is unchanged: 990 of 1000 kept, 989 not
    pos = [{"select_return": 989.0, "params_nonzero": 1}, {"select_return": 990.0, "params_nonzero": 2}]
    assert choose(pos, "sparsest-within", 0.0, 0.99, 1000.0) == (1, True)
    # no target asked: whether one was kept is None (a summary's null), not True
    assert choose(pos, "sparsest-within", 0.05, None, None) == (0, None)  # within 5 % of 990: the sparser
    assert choose(pos, "best", 0.0, None, None) == (1, None)
    assert choose(pos, "last", 0.0, None, None) == (1, None)


def test_confirm_and_compress_read_a_negative_return_by_its_magnitude(monkeypatch):
    """On three further episodes the teacher returns -100 each: a student at -100.5 (0.5 % below) holds the 99 %
    target, one at -102 does not; compress's table shows -90 against -100 as 110.0 % of the teacher and its caution
    names a return of -102 as below the 99 % asked, not one of -100.5."""
    import training.selection as sel
    from bpd_app.compress import caution, markdown
    from training.envs import Episodes

    outcomes = {"teacher": Episodes([-100.0] * 3, [9] * 3, [False] * 3, 500),
                "close": Episodes([-100.5] * 3, [9] * 3, [False] * 3, 500),
                "far": Episodes([-102.0] * 3, [9] * 3, [False] * 3, 500)}
    monkeypatch.setattr(sel, "rollouts", lambda env_id, policy, episodes, seed: outcomes[policy])
    held, recs = sel.confirm("E", "teacher", [("far", lambda: "far"), ("close", lambda: "close")], 500, 3, 0.99)
    assert held == 1 and [r["holds"] for r in recs] == [False, True]

    def rec(ret):
        return {"early_ends_where_teacher_finished": 0, "low_episodes": 0, "episodes": 3, "return": ret,
                "teacher_return": -100.0, "holds": ret >= -101.0}

    row = {"method": "a", "step": 1, "params_nonzero": 5, "cost": 7.0, "select_return": -90.0,
           "teacher_select_return": -100.0, "keep_return_met": True, "falls": 0, "confirm": rec(-100.5)}
    md = markdown({"env_id": "Pendulum-v1", "chosen": "a", "rule": "r", "cost": "m4f-cycles", "keep_return": 0.99,
                   "rows": [row]})
    assert "| -90.0 | 110.0 % | yes | 0 | 99.5 % of the teacher, 0 falls on 3: holds |" in md
    res = {"confirmed": False, "chosen": "a", "keep_return": 0.99}
    assert caution(res | {"rows": [row]}) is None
    assert "returned -102.0 there against the teacher's -100.0, below the 99 % asked" in caution(
        res | {"rows": [row | {"confirm": rec(-102.0)}]})


def test_a_constant_student_is_set_aside_where_another_has_a_path(monkeypatch):
    """Every path from the observations to the actions pruned: the export refuses such a student (a constant), so
    selection hands over the best candidate with a path, even at a lower return; `constant` reads the paths of a
    hand-built network (a unit reached only from pruned inputs feeds nothing)."""
    from types import SimpleNamespace

    import training.selection as sel
    from training.envs import Episodes
    from training.selection import constant

    w0 = np.array([[1.0, 0.0], [0.0, 0.0]])  # hidden unit 1 has no input
    assert constant(SimpleNamespace(weights=[w0, np.array([[0.0, 2.0]])]))
    assert not constant(SimpleNamespace(weights=[w0, np.array([[3.0, 2.0]])]))
    assert constant(SimpleNamespace(weights=[np.zeros((2, 2)), np.ones((1, 2))]))

    flat = _student(False, 1)
    with torch.no_grad():
        flat.layers[-1].theta.zero_()  # log alpha past any threshold: the output layer pruned whole
    cands = [Candidate(20, 1.0, 29, flat.state_dict()), Candidate(30, 1.0, 29, _student(False, 2).state_dict())]
    best, worse = Episodes([90.0], [1000], [False], 0), Episodes([80.0], [1000], [False], 0)
    outcomes = iter([best, worse])
    monkeypatch.setattr(sel, "rollouts", lambda env_id, act, episodes, seed: next(outcomes))
    out = select(cands, META, STATS, "InvertedPendulum-v5", 0, "best", 0.02, 1, None)
    assert [r.get("constant", False) for r in out["rows"]] == [True, False] and out["chosen"]["step"] == 30


@pytest.mark.parametrize("frozen", [False, True])
def test_the_sweep_says_where_a_frozen_mask_makes_every_threshold_the_same(frozen, tmp_path, monkeypatch, capsys):
    """A student of the fine-tune (distill's default) has its mask frozen, every log alpha at the run's clip (minus
    kept, plus pruned), so the sweep's thresholds -2 to 6 collapse it to one network: the same nonzero count on every
    row, which the table printed with no word of why. The JSON records mask_frozen and the command says so; a
    student not frozen: no note, and a threshold of -50 prunes what 6 keeps."""
    from types import SimpleNamespace

    import training.selection as sel
    from training.cli import _student_sweep
    from training.envs import Episodes
    from training.student import save_student

    save_student(tmp_path / "student.pt", _student(frozen, 0), META | {"env_id": "InvertedPendulum-v5"}, STATS)
    monkeypatch.setattr(sel, "rollouts", lambda env_id, act, episodes, seed: Episodes([5.0], [5], [True], 0))
    ns = SimpleNamespace(run=str(tmp_path / "student.pt"), thresholds=[-2.0, 6.0], episodes=1, seed=0, env=None,
                         out=str(tmp_path / "sweep.json"))
    _student_sweep(ns)
    out = capsys.readouterr().out
    import json
    r = json.loads((tmp_path / "sweep.json").read_text())
    assert r["mask_frozen"] is frozen
    nonzero = [x["params_nonzero"] for x in r["rows"]]
    if frozen:
        assert nonzero == [24, 24] and "note: this student was fine-tuned on a frozen mask" in out
        # at the clip the run records (META's 8), where the note said +-40 (log sigma^2's, not log alpha's)
        assert "log alpha sit at the clip, -8 (kept) or +8 (pruned)" in out and r["log_alpha_clip"] == 8.0
    else:
        assert nonzero[0] < nonzero[1] == 25 and "note:" not in out


def test_the_sweep_refuses_an_env_of_other_dimensions_in_one_line(tmp_path):
    """`bpd student sweep RUN --env Hopper-v5` on an InvertedPendulum student (4 observations, 1 action) ended in an
    internal error (numpy's broadcast of 11 observations against 4); it is refused as `student select` refuses it."""
    from training.selection import SweepConfig, run_sweep
    from training.student import save_student

    save_student(tmp_path / "student.pt", _student(False, 0), META | {"env_id": "InvertedPendulum-v5"}, STATS)
    with pytest.raises(BpdError, match=r"--env Hopper-v5 has 11 observations and 3 actions, the student 4 and 1"):
        run_sweep(SweepConfig(run=str(tmp_path / "student.pt"), env="Hopper-v5", episodes=1))


@pytest.mark.parametrize("share,said", [(1.5, "--keep-return must be at most 1 (got 1.5)"),
                                        (0.0, "--keep-return must be above 0 (got 0)")])
def test_compress_refuses_a_share_select_refuses_before_any_run(share, said, tmp_path):
    """`bpd compress --keep-return 1.5` passed compress's own check (at most 2), trained its first method, and only
    then ended in `student select`'s refusal (at most 1): minutes of training for a flag told at the start now."""
    from bpd_app.compress import CompressConfig, _check

    with pytest.raises(BpdError, match=said.replace("(", r"\(").replace(")", r"\)")):
        _check(CompressConfig(teacher=str(tmp_path / "t.npz"), dataset=str(tmp_path / "d.npz"), keep_return=share))


@pytest.mark.parametrize("cost,said", [("m4f-cycles", "--cost m4f-cycles measures every student on an emulated "
                                                      "Cortex-M4F, which needs arm-none-eabi-gcc"),
                                       ("flash", "--cost flash measures every student on an emulated Cortex-M4F")])
def test_compress_without_the_cross_compiler_says_so_before_the_first_run(cost, said, tmp_path, monkeypatch):
    """With no arm-none-eabi-gcc on PATH, `bpd compress --methods l1-threshold` (its default --cost m4f-cycles) trained
    the l1 run and only then ended in the meter's error; it is told before any run now. --cost smlad needs no
    emulator: the same methods pass the check."""
    import shutil

    from bpd_app.compress import CompressConfig, _check

    (tmp_path / "t.npz").write_bytes(b"")
    (tmp_path / "d.npz").write_bytes(b"")
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    cfg = CompressConfig(teacher=str(tmp_path / "t.npz"), dataset=str(tmp_path / "d.npz"), methods=["l1-threshold"],
                         cost=cost)
    with pytest.raises(BpdError, match=said):
        _check(cfg)
    cfg.cost = "smlad"
    assert _check(cfg) == ["l1-threshold"]


def test_select_names_a_directory_that_is_no_run_for_what_it_is(tmp_path):
    """`bpd student select` of an empty directory, or of a `bpd compress --out` (its runs one level down), said 'no
    candidates.pt (a run of this version keeps its evaluated students there)', as if the run were of an old version.
    Now: not a distillation run; a compress directory, with its runs to choose within."""
    from training.selection import SelectConfig, run_select

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BpdError, match=r"empty: not a distillation run \(no config.json, no candidates.pt\); give "
                                       r"the directory `bpd distill --out` wrote"):
        run_select(SelectConfig(run=str(empty)))
    comp = tmp_path / "comp"
    for m in ("l1-threshold", "bpd"):
        (comp / m).mkdir(parents=True)
        (comp / m / "candidates.pt").write_bytes(b"")
    (comp / "compress.json").write_text("{}")
    (comp / "student.pt").write_bytes(b"")
    with pytest.raises(BpdError, match=r"comp: a `bpd compress` directory, not a run: choose within one of its runs "
                                       rf"\(bpd, l1-threshold\), e.g. {comp}/bpd$"):
        run_select(SelectConfig(run=str(comp)))


def test_the_chosen_students_return_is_printed_with_its_spread(monkeypatch, capsys):
    """`student select`, `distill` and `compress` printed the chosen student's mean return on the selection seeds
    alone: 950.0 on ten episodes is ten at 950 or nine at 1000 and one fall at 500. Known answer: returns 1000 x 9 and
    500 are 950.0 +- 150.0, worst 500.0, in select's row, its line and compress's table."""
    import training.selection as sel
    from bpd_app.compress import markdown
    from training.cli import report_select
    from training.envs import Episodes

    monkeypatch.setattr(sel, "rollouts", lambda env_id, act, episodes, seed: Episodes(
        [1000.0] * 9 + [500.0], [1000] * 9 + [500], [False] * 9 + [True], 1))
    out = select([Candidate(20, 1000.0, 29, _student(True, 1).state_dict())], META, STATS, "InvertedPendulum-v5", 0,
                 "best", 0.02, 10, None)
    ch = out["chosen"]
    assert (ch["select_return"], ch["select_std"], ch["select_min"]) == (950.0, 150.0, 500.0)
    report_select(out | {"out": "run/selected.pt", "cost": None})
    assert "return 950.0 +- 150.0, worst 500.0 on the selection seeds" in capsys.readouterr().out
    row = {"method": "a", "step": 20, "params_nonzero": 29, "cost": 7.0, "teacher_select_return": 1000.0,
           "keep_return_met": False, "falls": 1} | {k: ch[k] for k in ("select_return", "select_std", "select_min")}
    md = markdown({"env_id": "E", "chosen": "a", "rule": "r", "cost": "m4f-cycles", "keep_return": 0.99, "rows": [row]})
    assert "| 950.0 +- 150.0, worst 500.0 | 95.0 % | no | 1 |" in md and "mean +- std, worst)" in md


def test_distill_prints_what_its_cycle_budget_gave(monkeypatch, capsys, tmp_path):
    """`bpd distill --prune-to-cycles 150` printed the student's nonzero count alone: the cycles asked for, and the
    149 the handed-over student's layers cost (summary.json's layer_cycles), were nowhere on the screen. A run without
    the budget prints no such line."""
    import argparse

    import training.distill
    from bpd.config import add_arguments
    from training.cli import distill_command
    from training.distill_config import DistillConfig

    ch = {"step": 600, "select_return": 222.5, "select_std": 22.4, "select_min": 183.0}
    summary = {"student": "student.pt", "steps": 600, "params_nonzero": 315, "params_total": 4545,
               "teacher_params_total": 67329, "seconds": 7.0, "selection": {"chosen": ch, "rule": "r"},
               "final_eval_return_mean": 249.8, "layer_cycles": 149.0}
    monkeypatch.setattr(training.distill, "distill", lambda cfg, meter, log: summary)
    ap = argparse.ArgumentParser()
    add_arguments(ap, DistillConfig)
    base = ["--teacher", "t.npz", "--dataset", "d.npz", "--out", str(tmp_path / "run")]
    distill_command(ap.parse_args(base + ["--prune-to-cycles", "150"]))
    out = capsys.readouterr().out
    assert ("layers: 149 est. Cortex-M4F cycles of the DSP integer kernel's layers (the C around them not counted; "
            "--prune-to-cycles 150)") in out
    assert "return 222.5 +- 22.4, worst 183.0, 315/4545 parameters nonzero" in out
    distill_command(ap.parse_args(base))
    assert "layers:" not in capsys.readouterr().out


def test_compress_names_each_methods_cost_in_its_unit():
    """compress's line per method read 'm4f-cycles 3762', the flag's value for a unit, and 'flash 10076' with no
    byte; it now says what the figure counts, as `student select` does."""
    from bpd_app.compress import run_line

    r = {"chosen": {"step": 200, "params_nonzero": 2264, "cost": 3762.0, "select_return": 78.7, "select_std": 5.0,
                    "select_min": 70.0}, "teacher_select_return": 1000.0, "keep_return_met": False}
    assert run_line("bpd", "m4f-cycles", r) == (
        "[bpd] step 200: 2264 nonzero, 3762 est. Cortex-M4F cycles (select's meter, before export), return 78.7 +- "
        "5.0, worst 70.0 (teacher 1000.0; target not kept)")
    assert "2264 nonzero, 3762 B est. Cortex-M4F policy flash" in run_line("bpd", "flash", r)


def test_compress_names_the_kernel_and_core_each_cost_is_of(monkeypatch):
    """compress printed '3762 est. Cortex-M4F cycles' of each method's student without saying of which kernel: the
    meter's figure is the cheaper of the compact kernel with the table tanh and the integer kernel, and the export may
    ship a third. The meter's record names it as `bpd export` does (compact-table, integer) with its core, and select's
    row, compress's line and its table carry it; the SMLAD count is the integer kernel's."""
    import training.selection as sel
    from bpd_app.compress import markdown, run_line
    from training.envs import Episodes
    from training.selection_config import cost_fields

    assert cost_fields({"cost": 710.0, "kernel": "integer", "target": "cortex-m4f"}, "m4f-cycles") == {
        "cost": 710.0, "cost_kernel": "integer", "cost_target": "cortex-m4f"}
    assert cost_fields(143.0, "smlad") == {"cost": 143.0, "cost_kernel": "integer"}
    assert cost_fields(7.0, "nonzero") == {"cost": 7.0}
    monkeypatch.setattr(sel, "rollouts", lambda env_id, act, episodes, seed: Episodes([1000.0] * 2, [1000] * 2,
                                                                                      [False] * 2, 1))
    cand = Candidate(20, 1000.0, 29, _student(True, 1).state_dict())
    row = select([cand], META, STATS, "InvertedPendulum-v5", 0, "best", 0.02, 2, None,
                 cost_fn=lambda pol: {"cost": 710.0, "kernel": "integer", "target": "cortex-m4f"},
                 cost="m4f-cycles")["chosen"]
    assert (row["cost"], row["cost_kernel"], row["cost_target"]) == (710.0, "integer", "cortex-m4f")
    r = {"chosen": row, "teacher_select_return": 1000.0, "keep_return_met": True}
    assert run_line("bpd", "m4f-cycles", r).startswith(
        f"[bpd] step 20: {row['params_nonzero']} nonzero, 710 est. Cortex-M4F cycles of the integer kernel on "
        "cortex-m4f (select's meter, before export), return 1000.0")
    smlad = select([cand], META, STATS, "InvertedPendulum-v5", 0, "best", 0.02, 2, None, cost_fn=lambda pol: 143.0,
                   cost="smlad")["chosen"]
    assert ", 143 DSP multiply-adds of the integer kernel (SMLADs), return" in run_line(
        "bpd", "smlad", r | {"chosen": smlad})
    rows = [{"method": "bpd", "step": 20, "params_nonzero": 29, "cost": 710.0, "cost_kernel": "integer",
             "cost_target": "cortex-m4f", "select_return": 1000.0, "teacher_select_return": 1000.0,
             "keep_return_met": True},
            {"method": "l1-threshold", "step": 20, "params_nonzero": 29, "cost": 2859.0, "cost_kernel": "compact-table",
             "cost_target": "cortex-m4f", "select_return": 1000.0, "teacher_select_return": 1000.0,
             "keep_return_met": True}]
    md = markdown({"env_id": "E", "chosen": "bpd", "rule": "r", "cost": "m4f-cycles", "keep_return": 0.99,
                   "rows": rows}).splitlines()
    assert "| kernel |" in md[4] and md[5].count("|") == md[4].count("|")
    assert md[6].startswith("| bpd | 20 | 29 | 710 | integer on cortex-m4f | 1000.0 |")
    assert md[7].startswith("| l1-threshold | 20 | 29 | 2859 | compact-table on cortex-m4f | 1000.0 |")


def test_a_student_short_of_the_teacher_is_said_so_after_the_hand_over():
    """Known answers: --prune-to-cycles 150 handed over a student of return 222.0 against the teacher's 1000.0 (the
    KL gate's reference) without a word; short by more than --eta-gate (5 %) is a note, within it none, and a run
    that measured no teacher (--kl-warmup none) says nothing; a negative return is short by its magnitude. The two
    returns compared are on the same seeds: the chosen student's periodic return against the gate's reference (the
    same periodic seeds), or, where the selection ran the teacher too (--keep-return), the two selection returns;
    never the selection return against the periodic reference."""
    from training.cli import short_of_teacher

    def run(train, select, gate=None, teacher_select=None):
        return {"eta_gate_teacher_return": gate, "selection": {
            "chosen": {"train_return": train, "select_return": select}, "teacher_select_return": teacher_select}}

    assert short_of_teacher(run(222.0, 300.0, 1000.0), 0.05) == (
        "bpd: note: the student's return, 222.0, is short of the teacher's 1000.0 (the periodic evaluations' seeds) "
        "by more than --eta-gate (5 %): it does not imitate the teacher; a larger --prune-to-cycles or --steps, or "
        "`bpd student select --keep-return`, may")
    # a selection return short of a periodic reference is no finding: other seeds
    assert short_of_teacher(run(990.0, 900.0, 1000.0), 0.05) is None
    assert short_of_teacher(run(990.0, 900.0, 1000.0, teacher_select=980.0), 0.05) == (
        "bpd: note: the student's return, 900.0, is short of the teacher's 980.0 (the selection seeds) by more than "
        "--eta-gate (5 %): it does not imitate the teacher; a larger --prune-to-cycles or --steps, or "
        "`bpd student select --keep-return`, may")
    assert short_of_teacher(run(950.0, 950.0, 1000.0), 0.05) is None
    assert short_of_teacher(run(10.0, 10.0), 0.05) is None
    assert short_of_teacher(run(-104.0, None, -100.0), 0.05) is None
    assert short_of_teacher(run(-106.0, None, -100.0), 0.05) is not None


@pytest.mark.parametrize("seed, episodes, ok", [(99_990, 10, True), (99_991, 10, False), (200_000, 10, False)])
def test_the_sweep_reports_on_reporting_seeds_only(tmp_path, seed, episodes, ok):
    """`bpd student sweep RUN --seed 200000` ran the sweep on the run's own selection seeds, the episodes that chose
    its student (its help says "reporting seeds: below 100000", and `bpd evaluate` refuses them): refused in one line
    before the student is read; the last reporting seed, 99,999, is taken."""
    from training.selection import SweepConfig, run_sweep

    cfg = SweepConfig(run=str(tmp_path / "missing.pt"), seed=seed, episodes=episodes)
    with pytest.raises(BpdError, match="missing.pt" if ok else
                       f"--seed {seed} with --episodes {episodes} reaches seed {seed + episodes - 1}: a sweep reports"):
        run_sweep(cfg)
