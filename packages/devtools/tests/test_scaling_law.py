"""Scaling-law fits on synthetic data with known truth."""

from __future__ import annotations

import numpy as np
import pytest

from seedbed.devtools.scaling_law import (
    CHINCHILLA_GRID,
    BreakpointScalingLaw,
    bnsl_predict,
    chinchilla_grid,
    fit_bnsl,
    fit_chinchilla,
)


def piecewise(C, breaks, slopes, L0=10.0, C0=1e15):
    """A continuous broken power law through (C0, L0)."""
    x = np.log(C)
    y = np.log(L0) + slopes[0] * (x - np.log(C0))
    for b, s0, s1 in zip(breaks, slopes[:-1], slopes[1:]):
        y += (s1 - s0) * np.maximum(x - np.log(b), 0.0)
    return np.exp(y)


C = np.logspace(15, 23, 80)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_two_breakpoints_recovered(seed):
    rng = np.random.default_rng(seed)
    breaks, slopes = [1e18, 1e21], [-0.05, -0.20, -0.08]
    L = piecewise(C, breaks, slopes) * np.exp(0.002 * rng.standard_normal(C.size))
    for law in (BreakpointScalingLaw(n_breaks=2), BreakpointScalingLaw([3e17, 3e21])):
        law.fit(C, L)
        assert isinstance(law.break_compute, list)
        np.testing.assert_allclose(law.break_compute, breaks, rtol=0.05)
        np.testing.assert_allclose(law.slopes, slopes, atol=0.02)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_breakpoint_is_searched_continuously(seed):
    rng = np.random.default_rng(seed)
    true = 3.3e19  # between grid points of the data
    L = piecewise(C, [true], [-0.07, -0.25]) * np.exp(0.002 * rng.standard_normal(C.size))
    law = BreakpointScalingLaw().fit(C, L)
    assert isinstance(law.break_compute, float)
    assert abs(law.break_compute / true - 1) < 0.05
    np.testing.assert_allclose(law.slopes, [-0.07, -0.25], atol=0.02)
    assert not np.any(np.isclose(law.break_compute, C, rtol=1e-9))  # not snapped to a point
    # params are (slope, intercept) of ln L = slope ln C + intercept, meeting at the break
    (s0, i0), (s1, i1) = law.params
    xb = np.log(law.break_compute)
    assert s0 * xb + i0 == pytest.approx(s1 * xb + i1)
    np.testing.assert_allclose(law.predict(C), piecewise(C, [true], [-0.07, -0.25]), rtol=0.01)


def test_noise_free_fit_is_exact():
    L = piecewise(C, [2e19], [-0.1, -0.3])
    law = BreakpointScalingLaw().fit(C, L)
    assert law.break_compute == pytest.approx(2e19, rel=1e-6)
    np.testing.assert_allclose(law.slopes, [-0.1, -0.3], atol=1e-8)


def test_guess_fixed_discontinuous_and_no_break():
    rng = np.random.default_rng(0)
    L = piecewise(C, [1e19], [-0.1, -0.3]) * np.exp(0.002 * rng.standard_normal(C.size))
    refined = BreakpointScalingLaw(5e18).fit(C, L)
    assert abs(refined.break_compute / 1e19 - 1) < 0.05
    fixed = BreakpointScalingLaw(5e18, fixed=True).fit(C, L)
    assert fixed.break_compute == 5e18
    assert fixed.sse > refined.sse
    apart = BreakpointScalingLaw(continuous=False).fit(C, L)  # independent regressions
    assert abs(apart.break_compute / 1e19 - 1) < 0.1
    np.testing.assert_allclose(apart.slopes, [-0.1, -0.3], atol=0.02)
    plain = BreakpointScalingLaw(n_breaks=0).fit(C, piecewise(C, [], [-0.2]))
    assert plain.break_compute is None
    assert plain.slopes == [pytest.approx(-0.2)]


def test_holdout_reports_extrapolation_error():
    rng = np.random.default_rng(1)
    L = piecewise(C, [1e18], [-0.05, -0.2]) * np.exp(0.002 * rng.standard_normal(C.size))
    law = BreakpointScalingLaw().fit(C, L, holdout=10)
    ex = law.extrapolation
    assert ex is not None
    assert ex.n_heldout == 10
    assert ex.mean_abs_rel_error < 0.01
    assert ex.max_abs_rel_error < 0.02
    assert BreakpointScalingLaw().fit(C, L, holdout=0.25).extrapolation.n_heldout == 20
    assert BreakpointScalingLaw().fit(C, L).extrapolation is None


@pytest.mark.parametrize(
    ("compute", "loss", "message"),
    [
        ([1.0, 2.0, 0.0, 4.0, 5.0, 6.0], [3, 2, 1.5, 1.2, 1.1, 1.0], "compute must be positive"),
        ([1.0, 2.0, -3.0, 4.0, 5.0, 6.0], [3, 2, 1.5, 1.2, 1.1, 1.0], "compute must be positive"),
        ([1.0, 2.0, 3.0], [3.0, 2.0], "same length"),
        ([1.0, 2.0, 3.0], [3.0, 2.0, 1.0], "only 3"),
        ([1.0, 2.0, np.nan, 4.0], [3.0, 2.0, 1.0, 0.5], "finite"),
        ([1.0, 2.0, 3.0, 4.0], [3.0, 2.0, -1.0, 0.5], "loss must be positive"),
    ],
)
def test_bad_input_breakpoint(compute, loss, message):
    with pytest.raises(ValueError, match=message):
        BreakpointScalingLaw().fit(compute, loss)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="strictly increasing"):
        BreakpointScalingLaw([1e20, 1e19])
    with pytest.raises(ValueError, match="positive numbers"):
        BreakpointScalingLaw(-1.0)
    with pytest.raises(ValueError, match="fixed=True needs"):
        BreakpointScalingLaw(fixed=True)
    with pytest.raises(ValueError, match="n_breaks=3 but 1"):
        BreakpointScalingLaw(1e19, n_breaks=3)
    with pytest.raises(RuntimeError, match="fit"):
        BreakpointScalingLaw().predict([1.0])


# ---- BNSL -----------------------------------------------------------------------------------
def test_bnsl_recovers_its_own_form():
    rng = np.random.default_rng(0)
    x = np.logspace(3, 9, 50)
    y = bnsl_predict(x, 0.8, 30.0, 0.1, [(0.3, 1e6, 0.3)]) * np.exp(0.003 * rng.standard_normal(50))
    fit = fit_bnsl(x, y, holdout=8)
    c1, d1, _f1 = fit.breaks[0]
    assert fit.a == pytest.approx(0.8, abs=0.05)
    assert fit.c0 == pytest.approx(0.1, abs=0.02)
    assert c1 == pytest.approx(0.3, abs=0.05)
    assert d1 == pytest.approx(1e6, rel=0.2)
    assert fit.extrapolation is not None
    assert fit.extrapolation.mean_abs_rel_error < 0.01


def test_bnsl_on_a_sharp_break():
    rng = np.random.default_rng(1)
    L = piecewise(C, [3e19], [-0.07, -0.25]) * np.exp(0.002 * rng.standard_normal(C.size))
    fit = fit_bnsl(C, L, with_offset=False)
    c1, d1, _f1 = fit.breaks[0]
    assert abs(d1 / 3e19 - 1) < 0.1
    assert fit.c0 == pytest.approx(0.07, abs=0.02)  # slope left = -c0
    assert fit.c0 + c1 == pytest.approx(0.25, abs=0.02)  # slope right = -(c0 + c1)
    assert fit.rmse_log < 0.004


def test_bnsl_bad_input():
    with pytest.raises(ValueError, match="6 parameters but only 5"):
        fit_bnsl([1, 2, 3, 4, 5], [5, 4, 3, 2, 1])
    with pytest.raises(ValueError, match="x must be positive"):
        fit_bnsl([0, 2, 3, 4, 5, 6, 7], [5, 4, 3, 2, 1, 1, 1])


# ---- Chinchilla Approach 3 ------------------------------------------------------------------
TRUTH = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}  # Hoffmann et al.


def chinchilla_data(seed: int, sigma: float = 0.005):
    rng = np.random.default_rng(seed)
    N, D = np.meshgrid(np.logspace(7, 10.5, 12), np.logspace(9, 12.5, 12))
    N, D = N.ravel(), D.ravel()
    L = TRUTH["E"] + TRUTH["A"] / N ** TRUTH["alpha"] + TRUTH["B"] / D ** TRUTH["beta"]
    return N, D, L * np.exp(sigma * rng.standard_normal(N.size))


def test_grid_is_the_papers():
    g = chinchilla_grid()
    assert g.shape == (4500, 5)
    assert CHINCHILLA_GRID["a"] == (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)
    assert sorted(set(g[:, 3])) == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert sorted(set(g[:, 2])) == [-1.0, -0.5, 0.0, 0.5, 1.0]


def test_chinchilla_recovers_exponents_from_full_grid():
    N, D, L = chinchilla_data(0)
    fit = fit_chinchilla(N, D, L, holdout=10)
    assert fit.n_starts == 4500
    assert abs(fit.alpha - TRUTH["alpha"]) < 0.01
    assert abs(fit.beta - TRUTH["beta"]) < 0.01
    assert pytest.approx(TRUTH["E"], rel=0.02) == fit.E
    assert fit.extrapolation is not None
    assert fit.extrapolation.mean_abs_rel_error < 0.01
    n_opt, d_opt = fit.optimal_allocation(1e21)
    assert 6 * n_opt[0] * d_opt[0] == pytest.approx(1e21)


def test_chinchilla_noise_free_and_small_grid():
    N, D, L = chinchilla_data(1, sigma=0.0)
    small = {"alpha": (0.5,), "beta": (0.5,), "e": (0.0, 1.0), "a": (5.0, 10.0), "b": (5.0, 10.0)}
    fit = fit_chinchilla(N, D, L, grid=small)
    assert fit.n_starts == 8
    for k, v in TRUTH.items():
        assert getattr(fit, k) == pytest.approx(v, rel=1e-3)
    np.testing.assert_allclose(fit.predict(N, D), L, rtol=1e-6)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (([1e8, 2e8, 3e8], [1e9, 2e9], [3.0, 2.9, 2.8]), "same length"),
        (([1e8, 2e8, 3e8, 4e8], [1e9] * 4, [3.0, 2.9, 2.8, 2.7]), "5 parameters but only 4"),
        (([1e8, -2e8, 3e8, 4e8, 5e8], [1e9] * 5, [3.0] * 5), "N must be positive"),
        (([1e8] * 5, [1e9, 0.0, 1e9, 1e9, 1e9], [3.0] * 5), "D must be positive"),
    ],
)
def test_chinchilla_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        fit_chinchilla(*args)
    with pytest.raises(ValueError, match="grid needs the keys"):
        chinchilla_grid({"a": (1.0,)})
