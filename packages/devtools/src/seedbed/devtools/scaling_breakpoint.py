"""Compact single-breakpoint scaling law (S-3): ``fit_breakpoint() -> BreakpointModel``.

The same broken power law as :class:`~.scaling_law.BreakpointScalingLaw` with one
breakpoint, returned as a plain dataclass with the slope and intercept on either side
(natural-log space: ``ln L = slope * ln C + intercept``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from seedbed.devtools.scaling_law import BreakpointScalingLaw, Extrapolation

__all__ = ["BreakpointModel", "fit_breakpoint"]


@dataclass(frozen=True)
class BreakpointModel:
    """A power law that bends once, at ``breakpoint`` (in compute units)."""

    breakpoint: float
    slope_left: float
    intercept_left: float
    slope_right: float
    intercept_right: float
    extrapolation: Extrapolation | None = None  # error on held-out points, if any

    def predict(self, compute: Sequence[float] | np.ndarray | float) -> np.ndarray:
        """Predicted loss at ``compute`` (positive values, any shape)."""
        C = np.asarray(compute, dtype=np.float64)
        if np.any(~np.isfinite(C)) or np.any(C <= 0):
            raise ValueError("compute must be positive and finite")
        x = np.log(C)
        left = x < np.log(self.breakpoint)
        y = np.where(
            left,
            self.slope_left * x + self.intercept_left,
            self.slope_right * x + self.intercept_right,
        )
        return np.exp(y)


def fit_breakpoint(
    compute: Sequence[float] | np.ndarray,
    loss: Sequence[float] | np.ndarray,
    breakpoint: float | None = None,
    *,
    continuous: bool = True,
    holdout: int | float = 0,
) -> BreakpointModel:
    """Fit a one-breakpoint power law.

    Args:
        compute: compute (or any positive scale variable), ``(n,)``.
        loss: positive losses, ``(n,)``.
        breakpoint: an initial guess (refined); None searches the whole range.
        continuous: the two sides meet at the breakpoint.
        holdout: largest-compute points held out to report the extrapolation error.

    Raises:
        ValueError: non-positive values, mismatched lengths, or too few points.
    """
    law = BreakpointScalingLaw(breakpoint, n_breaks=1, continuous=continuous)
    law.fit(compute, loss, holdout=holdout)
    (sl, il), (sr, ir) = law.params
    return BreakpointModel(float(law.break_compute), sl, il, sr, ir, law.extrapolation)  # type: ignore[arg-type]
