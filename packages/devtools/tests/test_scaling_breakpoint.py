"""fit_breakpoint() -> BreakpointModel: the compact single-break variant."""

from __future__ import annotations

import numpy as np
import pytest

from seedbed.devtools.scaling_breakpoint import BreakpointModel, fit_breakpoint


def test_fit_breakpoint_recovers_the_break():
    rng = np.random.default_rng(0)
    C = np.logspace(15, 23, 60)
    x, xb = np.log(C), np.log(2e19)
    y = 2.0 - 0.08 * x - 0.15 * np.maximum(x - xb, 0.0)
    L = np.exp(y + 0.002 * rng.standard_normal(C.size))
    model = fit_breakpoint(C, L, holdout=6)
    assert isinstance(model, BreakpointModel)
    assert abs(model.breakpoint / 2e19 - 1) < 0.05
    assert model.slope_left == pytest.approx(-0.08, abs=0.02)
    assert model.slope_right == pytest.approx(-0.23, abs=0.02)
    assert model.intercept_left == pytest.approx(2.0, abs=0.3)
    np.testing.assert_allclose(model.predict(C), np.exp(y), rtol=0.02)
    assert model.extrapolation is not None
    assert model.extrapolation.n_heldout == 6
    guess = fit_breakpoint(C, L, breakpoint=1e19)
    assert abs(guess.breakpoint / 2e19 - 1) < 0.05


def test_fit_breakpoint_seed_example():
    params = [1e7, 5e7, 1e8, 5e8]
    loss = [2.0, 1.8, 1.6, 1.3]
    # seed 002's four points cannot pin down two independent lines and a break (5 parameters)
    with pytest.raises(ValueError, match="5 parameters but only 4"):
        fit_breakpoint(params, loss, continuous=False)
    model = fit_breakpoint(params, loss)  # the continuous law has 4 parameters
    assert params[0] < model.breakpoint < params[-1]
    np.testing.assert_allclose(model.predict(params), loss, rtol=0.02)


def test_fit_breakpoint_bad_input():
    with pytest.raises(ValueError, match="same length"):
        fit_breakpoint([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="compute must be positive"):
        fit_breakpoint([1.0, 0.0, 3.0, 4.0, 5.0], [5.0, 4.0, 3.0, 2.0, 1.0])
    with pytest.raises(ValueError, match="parameters but only 3"):
        fit_breakpoint([1.0, 2.0, 3.0], [3.0, 2.0, 1.0])
    model = fit_breakpoint(np.logspace(1, 5, 12), np.logspace(1, 0, 12))
    with pytest.raises(ValueError, match="positive"):
        model.predict([-1.0])
