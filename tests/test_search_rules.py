"""The Levenberg-Marquardt rule, rho, CG backtracking and the Armijo line search at their
boundaries (the values are exact binary fractions, so ``<`` against ``<=`` is decided)."""
from __future__ import annotations

import math

import torch

from hfrnn.optim.damping import DampingOptions, reduction_ratio, update_damping
from hfrnn.optim.search import LineSearchOptions, backtrack, line_search


def test_damping_defaults_are_the_spec():
    o = DampingOptions()
    assert (o.low, o.high, o.boost, o.drop) == (0.25, 0.75, 1.5, 2.0 / 3.0)
    assert o.min > 0 and math.isfinite(o.max)


def test_update_damping_thresholds_and_bounds():
    o = DampingOptions()
    assert update_damping(2.0, 0.2499, o) == 3.0
    assert update_damping(2.0, 0.25, o) == 2.0        # rho = 1/4 is not below
    assert update_damping(2.0, 0.75, o) == 2.0        # rho = 3/4 is not above
    assert update_damping(3.0, 0.7501, o) == 2.0
    assert update_damping(2.0, math.inf, o) == 2.0 * 2.0 / 3.0
    assert update_damping(1e-8, 0.9, o) == 1e-8       # clamped at min
    assert update_damping(1e8, -1.0, o) == 1e8        # clamped at max
    custom = DampingOptions(low=0.5, high=0.6, boost=4.0, drop=0.25, min=0.1, max=10.0)
    assert update_damping(1.0, 0.4, custom) == 4.0
    assert update_damping(1.0, 0.55, custom) == 1.0
    assert update_damping(1.0, 0.7, custom) == 0.25
    assert update_damping(0.2, 0.7, custom) == 0.1
    assert update_damping(5.0, 0.0, custom) == 10.0


def test_reduction_ratio_cases():
    assert reduction_ratio(0.5, 1.0, -2.0) == 0.25     # (0.5 - 1) / -2
    assert reduction_ratio(1.5, 1.0, -2.0) == -0.25    # the loss went up
    assert reduction_ratio(math.inf, 1.0, -1.0) == -math.inf
    assert reduction_ratio(-math.inf, 1.0, -1.0) == -math.inf
    assert reduction_ratio(0.5, 1.0, math.nan) == -math.inf
    assert reduction_ratio(0.5, 1.0, -math.inf) == -math.inf
    assert reduction_ratio(0.5, 1.0, 1.0) == -math.inf  # the model predicts an increase
    assert reduction_ratio(0.5, 1.0, 0.0) == -math.inf


def _kept(*its):
    return [(i, torch.tensor([float(i)])) for i in its]


def test_backtrack_ties_keep_the_later_iterate():
    vals = {5: 1.0, 7: 2.0, 9: 2.0}
    j, f, n = backtrack(_kept(5, 7, 9), lambda x: vals[int(x)])
    assert (j, f, n) == (2, 2.0, 2)  # 7 is not better than 9: stop, though 5 would be


def test_backtrack_single_iterate():
    assert backtrack(_kept(3), lambda x: 4.0) == (0, 4.0, 1)


def test_backtrack_walks_all_the_way():
    j, f, n = backtrack(_kept(5, 7, 9, 11), lambda x: float(x))
    assert (j, f, n) == (0, 5.0, 4)


def test_backtrack_leaves_a_non_finite_last_iterate():
    vals = {5: 1.0, 7: 3.0, 9: 2.0, 11: math.nan}
    assert backtrack(_kept(5, 7, 9, 11), lambda x: vals[int(x)]) == (2, 2.0, 3)
    vals = {5: 1.0, 7: 2.0, 9: math.inf}
    assert backtrack(_kept(5, 7, 9), lambda x: vals[int(x)]) == (0, 1.0, 3)
    vals = {5: 1.0, 7: math.inf, 9: math.inf}
    j, f, n = backtrack(_kept(5, 7, 9), lambda x: vals[int(x)])
    assert (j, f, n) == (2, math.inf, 2)  # inf is not better than inf: stop


def test_line_search_accepts_armijo_equality():
    # f0 = 1, slope -1, c = 1/2: alpha = 1 needs f(1) <= 0.5; exactly 0.5 is accepted.
    o = LineSearchOptions(c=0.5)
    assert line_search(lambda a: 0.5, 1.0, -1.0, o) == (1.0, 0.5, 1)
    # Just above: rejected at 1; at 0.5 (shrink) the bound is 0.75.
    o2 = LineSearchOptions(c=0.5, shrink=0.5)
    vals = {1.0: 0.5000001, 0.5: 0.75}
    assert line_search(lambda a: vals[a], 1.0, -1.0, o2) == (0.5, 0.75, 2)


def test_line_search_bound_scales_with_the_slope():
    # f0 = 1, slope -1/2, c = 1/2: the bound at alpha = 1 is 1 - 1/4 = 0.75 (exactly).
    o = LineSearchOptions(c=0.5, shrink=0.5)
    assert line_search(lambda a: 0.75, 1.0, -0.5, o) == (1.0, 0.75, 1)
    vals = {1.0: 0.76, 0.5: 0.875}  # at alpha = 1/2 the bound is 0.875
    assert line_search(lambda a: vals[a], 1.0, -0.5, o) == (0.5, 0.875, 2)


def test_line_search_needs_a_decrease_even_uphill():
    # slope > 0 (not a descent direction): Armijo's bound is above f0; f < f0 is still required.
    o = LineSearchOptions(max_tries=3)
    alpha, fa, n = line_search(lambda a: 1.0, 1.0, 1.0, o)
    assert alpha is None and fa == 1.0 and n == 3
    alpha, fa, n = line_search(lambda a: 0.9, 1.0, 1.0, o)
    assert (alpha, fa, n) == (1.0, 0.9, 1)


def test_line_search_returns_the_last_value_tried():
    tried = []

    def f(a):
        tried.append(a)
        return 2.0 + a

    alpha, fa, n = line_search(f, 1.0, -1.0, LineSearchOptions(max_tries=4, shrink=0.5))
    assert alpha is None and tried == [1.0, 0.5, 0.25, 0.125] and n == 4 and fa == 2.125


def test_line_search_disabled_takes_the_full_step_or_nothing():
    o = LineSearchOptions(enabled=False)
    # No Armijo margin: any decrease at alpha = 1 is taken.
    assert line_search(lambda a: 0.999, 1.0, -1.0, o) == (1.0, 0.999, 1)
    calls = []
    alpha, fa, n = line_search(lambda a: calls.append(a) or 1.5, 1.0, -1.0, o)
    assert alpha is None and calls == [1.0] and n == 1 and fa == 1.5
    alpha, fa, n = line_search(lambda a: 1.0, 1.0, -1.0, o)  # no decrease: rejected
    assert alpha is None
    # with f(1) known, nothing is evaluated
    assert line_search(lambda a: 1 / 0, 1.0, -1.0, o, f_at_one=0.5) == (1.0, 0.5, 0)


def test_line_search_known_f_at_one_rejected_then_evaluates():
    calls = []
    alpha, fa, n = line_search(lambda a: calls.append(a) or 0.0, 1.0, -1.0, LineSearchOptions(), f_at_one=3.0)
    assert calls == [0.8] and (alpha, fa, n) == (0.8, 0.0, 1)


def test_line_search_defaults():
    o = LineSearchOptions()
    assert (o.enabled, o.c, o.shrink, o.max_tries) == (True, 1e-2, 0.8, 60)
    tried = []
    alpha, _, n = line_search(lambda a: tried.append(a) or 5.0, 1.0, -1.0, o)
    assert alpha is None and n == 60 and len(tried) == 60
    assert math.isclose(tried[-1], 0.8 ** 59) and tried[:3] == [1.0, 0.8, 0.8 * 0.8]


def test_line_search_nan_and_inf_are_never_accepted():
    o = LineSearchOptions(max_tries=2)
    assert line_search(lambda a: -math.inf, 1.0, -1.0, o)[0] is None
    assert line_search(lambda a: math.nan, 1.0, -1.0, o)[0] is None
