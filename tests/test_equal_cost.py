"""benchmarks/equal_cost.py keeps what a lost run root no longer holds, and takes a retrained cell's new record."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("equal_cost", Path(__file__).parents[1] / "benchmarks" / "equal_cost.py")
assert _spec and _spec.loader
equal_cost = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(equal_cost)

MEASURED = {"finished": True, "product_sha256": "aa", "return_mean": 1.0, "kernels": {"integer": {"cycles": 10}}}


def test_a_lost_run_root_keeps_the_committed_record():
    assert equal_cost.kept({"finished": False}, MEASURED) == MEASURED | {"kept": True}


def test_a_restored_summary_without_measurements_keeps_the_committed_record():
    restored = {"finished": True, "product_sha256": "aa", "return_mean": 1.0, "kernels": {}}
    assert equal_cost.kept(restored, MEASURED) == MEASURED | {"kept": True}
    unnamed = {"finished": True, "product_sha256": None, "kernels": {}}  # no hash: not known to be the same
    assert equal_cost.kept(unnamed, MEASURED | {"product_sha256": None}) is unnamed


def test_a_retrained_cell_is_the_new_record_even_unmeasured():
    retrained = {"finished": True, "product_sha256": "bb", "return_mean": 2.0, "kernels": {}}
    assert equal_cost.kept(retrained, MEASURED) is retrained


def test_a_new_measurement_replaces_the_old_and_a_first_one_stands():
    fresh = MEASURED | {"kernels": {"integer": {"cycles": 9}}}
    assert equal_cost.kept(fresh, MEASURED) is fresh
    assert equal_cost.kept(fresh, None) is fresh
    assert equal_cost.kept({"finished": False}, None) == {"finished": False}


def test_integer_cycles_are_compared_only_within_one_kernel_form():
    """Two sides' integer-kernel cycles make a ratio only when both were built in the same recorded form; the
    float kernels' always (a record kept from a lost run root names no form)."""
    side = {"finished": True, "return_std": 10.0, "episodes": 30, "params_nonzero": 100}

    def rec(ret, cyc, form):
        return side | {"return_mean": ret, "integer_form": form,
                       "kernels": {"integer": {"cycles": cyc}, "compact": {"cycles": 4 * cyc}}}

    a = rec(100.0, 1000, "dsp+vcvt")
    same = equal_cost.verdicts({"A": a, "B": rec(110.0, 900, "dsp+vcvt")}, "B")
    assert same["cycles_b_over_a"] == {"integer": 0.9, "compact": 0.9} and same["return_b_minus_a"] == 10.0
    old = equal_cost.verdicts({"A": a, "B": rec(110.0, 1100, None)}, "B")
    assert old["cycles_b_over_a"] == {"compact": 1.1}
    assert not equal_cost.same_integer_form(rec(1, 1, None), rec(1, 1, None))  # unknown is never "the same"
