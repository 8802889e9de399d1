"""Scaling-law fits (S-3): broken power laws, BNSL and Chinchilla's Approach 3.

- :class:`BreakpointScalingLaw` (seed 002's API): a piecewise power law, i.e. piecewise
  linear in ``log L`` against ``log C``, continuous at its breakpoints by default. For given
  breakpoints the fit is linear least squares; the breakpoints themselves are searched
  continuously (a grid, then a bounded/Nelder-Mead search of the profile error), not only at
  the data points.
- :func:`fit_bnsl`: Broken Neural Scaling Law (Caballero et al. 2022),
  ``y = a + b x^-c0 prod_i (1 + (x / d_i)^(1/f_i))^(-c_i f_i)``, fitted to ``log y``.
- :func:`fit_chinchilla`: Hoffmann et al. 2022 Approach 3, ``L = E + A / N^alpha + B / D^beta``
  fitted by minimising the Huber loss (delta = 1e-3) of ``log L`` with L-BFGS from the grid of
  4500 starts the paper and Besiroglu et al. (2024)'s replication use (alpha, beta in
  {0, .5, ..., 2}, e in {-1, -.5, ..., 1}, a, b in {0, 5, ..., 25}). All starts run at once
  in a batched (vectorised) L-BFGS; the best few are then polished in float64 with BFGS.

Every fit takes ``holdout``: the points with the largest compute are held out, the fit uses
the rest, and its extrapolation error on the held-out points is reported.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import product
from typing import Any

import numpy as np
from scipy.optimize import least_squares, minimize, minimize_scalar

__all__ = [
    "CHINCHILLA_GRID",
    "BNSLFit",
    "BreakpointScalingLaw",
    "ChinchillaFit",
    "Extrapolation",
    "bnsl_predict",
    "chinchilla_grid",
    "fit_bnsl",
    "fit_chinchilla",
]

ArrayLike = Sequence[float] | np.ndarray

# Approach 3 starting grid (Hoffmann et al. 2022, App. D.2; Besiroglu et al. 2024)
CHINCHILLA_GRID: dict[str, tuple[float, ...]] = {
    "alpha": (0.0, 0.5, 1.0, 1.5, 2.0),
    "beta": (0.0, 0.5, 1.0, 1.5, 2.0),
    "e": (-1.0, -0.5, 0.0, 0.5, 1.0),
    "a": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
    "b": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
}


# --------------------------------------------------------------------------------------------
# Shared: validation and extrapolation error
# --------------------------------------------------------------------------------------------
def _positive(name: str, values: ArrayLike) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr[~np.isfinite(arr)][:3].tolist()}")
    if np.any(arr <= 0):
        raise ValueError(
            f"{name} must be positive (it is fitted in log space), got {arr[arr <= 0][:3].tolist()}"
        )
    return arr


def _same_length(**arrays: np.ndarray) -> int:
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"inputs must have the same length, got {lengths}")
    return next(iter(lengths.values()))


def _n_holdout(holdout: int | float, n: int) -> int:
    if isinstance(holdout, bool) or not isinstance(holdout, (int, float, np.integer, np.floating)):
        raise TypeError(f"holdout must be an int count or a float fraction, got {holdout!r}")
    if isinstance(holdout, (float, np.floating)) and not float(holdout).is_integer():
        if not 0.0 < holdout < 1.0:
            raise ValueError(f"a holdout fraction must be in (0, 1), got {holdout}")
        return max(1, round(holdout * n))
    k = int(holdout)
    if k < 0 or k >= n:
        raise ValueError(f"holdout must be in [0, {n - 1}] points, got {k}")
    return k


def _split(order_key: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training points and of the ``k`` points with the largest key."""
    order = np.argsort(order_key, kind="stable")
    return np.sort(order[: len(order) - k]), np.sort(order[len(order) - k :])


def _need(n_train: int, n_params: int, what: str) -> None:
    if n_train < n_params:
        raise ValueError(
            f"{what} has {n_params} parameters but only {n_train} (training) points; "
            f"need at least {n_params}"
        )


@dataclass(frozen=True)
class Extrapolation:
    """How a fit predicts the held-out (largest-compute) points."""

    n_heldout: int
    mean_abs_rel_error: float  # mean |pred - true| / true
    max_abs_rel_error: float
    rmse_log: float  # root mean square of log(pred / true)

    @classmethod
    def of(cls, pred: np.ndarray, true: np.ndarray) -> Extrapolation:
        rel = np.abs(pred - true) / true
        return cls(
            len(true),
            float(rel.mean()),
            float(rel.max()),
            float(np.sqrt(np.mean(np.log(pred / true) ** 2))),
        )


# --------------------------------------------------------------------------------------------
# Piecewise power law with breakpoints
# --------------------------------------------------------------------------------------------
def _design(x: np.ndarray, breaks: np.ndarray, continuous: bool) -> np.ndarray:
    """Least-squares design matrix for given breakpoints (in log space)."""
    if continuous:
        cols = [np.ones_like(x), x] + [np.maximum(x - b, 0.0) for b in breaks]
        return np.stack(cols, axis=1)  # (n, 2 + k)
    edges = np.concatenate([[-np.inf], breaks, [np.inf]])
    cols = []
    for j in range(len(edges) - 1):
        inside = ((x >= edges[j]) & (x < edges[j + 1])).astype(np.float64)
        cols += [inside, inside * x]
    return np.stack(cols, axis=1)  # (n, 2 (k + 1))


def _lstsq(
    x: np.ndarray, y: np.ndarray, breaks: np.ndarray, continuous: bool
) -> tuple[np.ndarray, float]:
    X = _design(x, breaks, continuous)
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    r = y - X @ coef
    return coef, float(r @ r)


def _segments(coef: np.ndarray, breaks: np.ndarray, continuous: bool) -> list[tuple[float, float]]:
    """(slope, intercept) of each segment, in natural-log space."""
    if not continuous:
        return [(float(coef[2 * j + 1]), float(coef[2 * j])) for j in range(len(breaks) + 1)]
    c, s = float(coef[0]), float(coef[1])
    segs = [(s, c)]
    for j, b in enumerate(breaks):
        d = float(coef[2 + j])
        s, c = s + d, c - d * float(b)
        segs.append((s, c))
    return segs


class BreakpointScalingLaw:
    """A broken power law ``L(C)``: piecewise linear in log-log space.

    Args:
        break_compute: None (search one breakpoint), a float (an initial guess of one
            breakpoint, refined unless ``fixed``) or a list (guesses of several).
        n_breaks: number of breakpoints to search when ``break_compute`` is None (0 fits a
            single power law).
        fixed: keep the given breakpoints as they are.
        continuous: segments meet at the breakpoints (a broken power law); False fits each
            segment on its own, as independent regressions on either side.
        min_points: fewest training points on each side of every breakpoint.

    After :meth:`fit`: ``break_compute`` (a float for one break, a list for several),
    ``params`` (``[(slope, intercept), ...]`` per segment with ``ln L = slope * ln C +
    intercept``) and ``extrapolation`` (None without a holdout).
    """

    def __init__(
        self,
        break_compute: float | Sequence[float] | None = None,
        *,
        n_breaks: int | None = None,
        fixed: bool = False,
        continuous: bool = True,
        min_points: int = 2,
    ) -> None:
        self._as_list = isinstance(break_compute, (list, tuple, np.ndarray))
        if break_compute is None:
            k = 1 if n_breaks is None else n_breaks
            if not isinstance(k, int) or k < 0:
                raise ValueError(f"n_breaks must be an int >= 0, got {n_breaks!r}")
            self._guess: np.ndarray | None = None
            self._given: list[float] | None = None
            self._as_list = k > 1
            if fixed:
                raise ValueError("fixed=True needs break_compute values to keep")
        else:
            g = np.atleast_1d(np.asarray(break_compute, dtype=np.float64))
            if g.ndim != 1 or g.size == 0 or np.any(~np.isfinite(g)) or np.any(g <= 0):
                raise ValueError(f"break_compute must be positive numbers, got {break_compute!r}")
            if np.any(np.diff(g) <= 0):
                raise ValueError(f"break_compute must be strictly increasing, got {g.tolist()}")
            if n_breaks is not None and n_breaks != g.size:
                raise ValueError(f"n_breaks={n_breaks} but {g.size} break_compute value(s) given")
            k = g.size
            self._guess = np.log(g)
            self._given = [float(v) for v in g]
        if min_points < 1:
            raise ValueError(f"min_points must be >= 1, got {min_points}")
        self.n_breaks = k
        self.fixed = fixed
        self.continuous = continuous
        self.min_points = min_points
        self.break_compute: float | list[float] | None = (
            None
            if self._guess is None
            else (
                [float(v) for v in np.exp(self._guess)]
                if self._as_list
                else float(np.exp(self._guess[0]))
            )
        )
        self.params: list[tuple[float, float]] = []
        self.extrapolation: Extrapolation | None = None
        self.sse: float = float("nan")
        self._breaks = np.zeros(0)

    @property
    def n_params(self) -> int:
        k = self.n_breaks
        free = 0 if self.fixed else k
        return (2 + k if self.continuous else 2 * (k + 1)) + free

    @property
    def slopes(self) -> list[float]:
        return [s for s, _ in self.params]

    def _profile(self, x: np.ndarray, y: np.ndarray, breaks: np.ndarray) -> float:
        """SSE at ``breaks``, +inf where a segment has fewer than ``min_points`` points."""
        b = np.sort(breaks)
        edges = np.concatenate([[-np.inf], b, [np.inf]])
        counts = np.histogram(x, bins=edges)[0]
        if np.any(counts < self.min_points):
            return float("inf")
        return _lstsq(x, y, b, self.continuous)[1]

    def _search(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        k = self.n_breaks
        xs = np.sort(x)
        lo, hi = xs[self.min_points - 1], xs[-self.min_points]
        if self._guess is not None:
            start = self._guess.copy()
        else:
            # coarse grid, one breakpoint at a time (greedy), then joint refinement
            grid = np.linspace(lo, hi, 256)
            start = np.zeros(0)
            for _ in range(k):
                best, best_b = float("inf"), None
                for b in grid:
                    sse = self._profile(x, y, np.append(start, b))
                    if sse < best:
                        best, best_b = sse, b
                if best_b is None:
                    raise ValueError(
                        f"cannot place {k} breakpoint(s) with >= {self.min_points} points per segment"
                    )
                start = np.sort(np.append(start, best_b))
        if k == 1:
            if self._guess is not None:
                # local grid around the guess (a quarter of the range either side)
                w = (hi - lo) / 4
                local = np.linspace(max(lo, start[0] - w), min(hi, start[0] + w), 65)
                local_sse = np.array([self._profile(x, y, np.array([b])) for b in local])
                if np.isfinite(local_sse.min()):
                    start = np.array([local[int(np.argmin(local_sse))]])
                step = 2 * w / 64
            else:
                step = (hi - lo) / 255
            b0 = float(start[0])
            res = minimize_scalar(
                lambda b: self._profile(x, y, np.array([b])),
                bounds=(max(lo, b0 - 2 * step), min(hi, b0 + 2 * step)),
                method="bounded",
                options={"xatol": 1e-10},
            )
            if res.fun <= self._profile(x, y, start):
                return np.array([float(res.x)])
            return start
        res = minimize(
            lambda b: self._profile(x, y, b),
            start,
            method="Nelder-Mead",
            options={"xatol": 1e-8, "fatol": 1e-14, "maxiter": 4000},
        )
        return np.sort(res.x) if res.fun <= self._profile(x, y, start) else np.sort(start)

    def fit(
        self, compute: ArrayLike, loss: ArrayLike, *, holdout: int | float = 0
    ) -> BreakpointScalingLaw:
        """Fit to ``(compute, loss)``; the ``holdout`` largest-compute points are held out.

        Raises:
            ValueError: non-positive or non-finite values, mismatched lengths, or fewer
                training points than parameters.
        """
        C = _positive("compute", compute)
        L = _positive("loss", loss)
        n = _same_length(compute=C, loss=L)
        k_out = _n_holdout(holdout, n) if n > 0 else 0
        train, test = _split(C, k_out)
        _need(len(train), self.n_params, f"a {self.n_breaks}-breakpoint scaling law")
        need_pts = self.min_points * (self.n_breaks + 1)
        if len(train) < need_pts:
            raise ValueError(
                f"{self.n_breaks} breakpoint(s) with >= {self.min_points} points per segment "
                f"need {need_pts} points, got {len(train)}"
            )
        x, y = np.log(C[train]), np.log(L[train])
        if self.n_breaks == 0:
            breaks = np.zeros(0)
        elif self.fixed:
            breaks = self._guess.copy()  # type: ignore[union-attr]
        else:
            breaks = self._search(x, y)
        coef, sse = _lstsq(x, y, breaks, self.continuous)
        self._breaks = breaks
        self.sse = sse
        self.params = _segments(coef, breaks, self.continuous)
        vals = [float(v) for v in np.exp(breaks)]
        if self.fixed and self._given is not None:
            vals = list(self._given)  # exactly as given, not through exp(log(.))
        self.break_compute = (vals if self._as_list else vals[0]) if vals else None
        self.extrapolation = Extrapolation.of(self.predict(C[test]), L[test]) if k_out else None
        return self

    def predict(self, compute: ArrayLike) -> np.ndarray:
        """Predicted loss at ``compute`` (any shape of positive values)."""
        if not self.params:
            raise RuntimeError("call fit() first")
        C = np.asarray(compute, dtype=np.float64)
        if np.any(~np.isfinite(C)) or np.any(C <= 0):
            raise ValueError("compute must be positive and finite")
        x = np.log(C)
        seg = np.searchsorted(self._breaks, x, side="right")
        slopes = np.array([s for s, _ in self.params])
        icpt = np.array([c for _, c in self.params])
        return np.exp(slopes[seg] * x + icpt[seg])


# --------------------------------------------------------------------------------------------
# Broken Neural Scaling Law
# --------------------------------------------------------------------------------------------
def bnsl_predict(
    x: ArrayLike, a: float, b: float, c0: float, breaks: Sequence[tuple[float, float, float]]
) -> np.ndarray:
    """``a + b x^-c0 prod_i (1 + (x/d_i)^(1/f_i))^(-c_i f_i)`` for ``breaks = [(c_i, d_i, f_i)]``.

    Evaluated in log space (``log1p(exp(.))`` as ``logaddexp``) so sharp breaks do not overflow.
    """
    lx = np.log(np.asarray(x, dtype=np.float64))
    return a + np.exp(_bnsl_log_power(lx, math.log(b), c0, breaks))


def _bnsl_log_power(
    lx: np.ndarray, lb: float, c0: float, breaks: Sequence[tuple[float, float, float]]
) -> np.ndarray:
    out = lb - c0 * lx
    for c, d, f in breaks:
        out = out - c * f * np.logaddexp(0.0, (lx - math.log(d)) / f)
    return out


@dataclass
class BNSLFit:
    """Fitted BNSL parameters: ``y = a + b x^-c0 prod_i (1 + (x/d_i)^(1/f_i))^(-c_i f_i)``."""

    a: float
    b: float
    c0: float
    breaks: list[tuple[float, float, float]]  # (c_i, d_i, f_i) per break
    rmse_log: float  # training root mean square error of log y
    extrapolation: Extrapolation | None = None

    def predict(self, x: ArrayLike) -> np.ndarray:
        return bnsl_predict(x, self.a, self.b, self.c0, self.breaks)


def fit_bnsl(
    x: ArrayLike,
    y: ArrayLike,
    *,
    n_breaks: int = 1,
    holdout: int | float = 0,
    with_offset: bool = True,
) -> BNSLFit:
    """Fit a Broken Neural Scaling Law to ``log y`` (least squares, several starts).

    Starts come from a broken-power-law fit (its slopes and breakpoints give ``c_i`` and
    ``d_i``) crossed with sharpness ``f`` in {0.05, 0.2, 0.5, 1} and offsets ``a`` in
    {0, min(y)/2}.

    Args:
        x: the scale variable (compute, data, parameters), positive.
        y: the metric (loss), positive.
        n_breaks: number of breaks (>= 0).
        holdout: largest-``x`` points held out to report the extrapolation error.
        with_offset: fit the irreducible term ``a`` (else ``a = 0``).

    Raises:
        ValueError: bad values, mismatched lengths, or fewer points than parameters.
    """
    X = _positive("x", x)
    Y = _positive("y", y)
    n = _same_length(x=X, y=Y)
    if not isinstance(n_breaks, int) or n_breaks < 0:
        raise ValueError(f"n_breaks must be an int >= 0, got {n_breaks!r}")
    k_out = _n_holdout(holdout, n) if n else 0
    train, test = _split(X, k_out)
    n_params = 2 + int(with_offset) + 3 * n_breaks
    _need(len(train), n_params, f"a BNSL with {n_breaks} break(s)")
    lx, ly = np.log(X[train]), np.log(Y[train])
    xmin, xmax = float(lx.min()), float(lx.max())

    def unpack(p: np.ndarray) -> tuple[float, float, float, list[tuple[float, float, float]]]:
        a = float(p[0]) if with_offset else 0.0
        q = p[1:] if with_offset else p
        lb, c0 = float(q[0]), float(q[1])
        brk = [
            (float(q[2 + 3 * i]), math.exp(float(q[3 + 3 * i])), math.exp(float(q[4 + 3 * i])))
            for i in range(n_breaks)
        ]
        return a, lb, c0, brk

    def resid(p: np.ndarray) -> np.ndarray:
        a, lb, c0, brk = unpack(p)
        lp = _bnsl_log_power(lx, lb, c0, brk)
        pred = np.logaddexp(math.log(a), lp) if a > 0 else lp
        return pred - ly

    # starts from a broken power law in log-log
    min_points = max(1, min(2, len(train) // (n_breaks + 1)))
    bp = BreakpointScalingLaw(n_breaks=n_breaks, min_points=min_points).fit(X[train], Y[train])
    slopes = bp.slopes
    dlog = [
        math.log(v) for v in np.atleast_1d(bp.break_compute if bp.break_compute is not None else [])
    ]
    lo = (
        ([0.0] if with_offset else [])
        + [-np.inf, -np.inf]
        + [-np.inf, xmin - 5, math.log(1e-3)] * n_breaks
    )
    hi = (
        ([float(Y.min())] if with_offset else [])
        + [np.inf, np.inf]
        + [np.inf, xmax + 5, math.log(10.0)] * n_breaks
    )
    best: Any = None
    for f0, a_frac in product((0.05, 0.2, 0.5, 1.0), (0.0, 0.5) if with_offset else (0.0,)):
        a0 = a_frac * float(Y[train].min())
        p0 = ([a0] if with_offset else []) + [bp.params[0][1], -slopes[0]]
        for i in range(n_breaks):
            p0 += [-(slopes[i + 1] - slopes[i]), dlog[i], math.log(f0)]
        p0a = np.clip(np.array(p0), np.array(lo) + 1e-12, np.array(hi) - 1e-12)
        try:
            res = least_squares(resid, p0a, bounds=(lo, hi), x_scale="jac", max_nfev=4000)
        except (ValueError, FloatingPointError):
            continue
        if best is None or res.cost < best.cost:
            best = res
    if best is None:
        raise RuntimeError("every BNSL start failed")
    a, lb, c0, brk = unpack(best.x)
    fit = BNSLFit(a, math.exp(lb), c0, brk, float(np.sqrt(np.mean(best.fun**2))))
    if k_out:
        fit.extrapolation = Extrapolation.of(fit.predict(X[test]), Y[test])
    return fit


# --------------------------------------------------------------------------------------------
# Chinchilla Approach 3
# --------------------------------------------------------------------------------------------
def chinchilla_grid(grid: dict[str, Sequence[float]] | None = None) -> np.ndarray:
    """Starting points ``(S, 5)`` as ``[a, b, e, alpha, beta]`` (A = e^a, B = e^b, E = e^e)."""
    g = CHINCHILLA_GRID if grid is None else grid
    missing = {"a", "b", "e", "alpha", "beta"} - set(g)
    if missing:
        raise ValueError(f"grid needs the keys a, b, e, alpha, beta; missing {sorted(missing)}")
    pts = product(g["a"], g["b"], g["e"], g["alpha"], g["beta"])
    return np.array(list(pts), dtype=np.float64)


def _huber_objective(
    P: np.ndarray, lnN: np.ndarray, lnD: np.ndarray, y: np.ndarray, delta: float
) -> tuple[np.ndarray, np.ndarray]:
    """Mean Huber loss of ``log L`` and its gradient for a batch of parameters.

    The prediction is ``LSE(a - alpha ln N, b - beta ln D, e)``; the Huber loss is written as
    ``h (|r| - h / 2)`` with ``h = min(|r|, delta)`` and its derivative as ``sign(r) h``.

    Args:
        P: ``(S, 5)`` rows ``[a, b, e, alpha, beta]``.

    Returns:
        ``f`` ``(S,)`` and ``grad`` ``(S, 5)``.
    """
    a, b, e, al, be = (P[:, i : i + 1] for i in range(5))  # each (S, 1)
    n = lnN.shape[0]
    t1 = a - al * lnN[None, :]  # (S, n)
    t2 = b - be * lnD[None, :]  # (S, n)
    m = np.maximum(t1, t2)
    np.maximum(m, e, out=m)
    # exp of the terms relative to the largest (which is exp(0) = 1); clamping at -60 changes
    # the sum by < 1e-26 relative and keeps exp out of its slow subnormal range
    t1 -= m
    w1 = np.exp(np.maximum(t1, -60.0, out=t1), out=t1)
    t2 -= m
    w2 = np.exp(np.maximum(t2, -60.0, out=t2), out=t2)
    w3 = e - m
    np.exp(np.maximum(w3, -60.0, out=w3), out=w3)
    s = w1 + w2
    s += w3
    r = np.log(s)
    r += m
    r -= y[None, :]  # residual of log L, (S, n)
    ar = np.abs(r)
    h = np.minimum(ar, delta)
    ar -= 0.5 * h
    ar *= h
    f = ar.sum(axis=1) / n
    np.copysign(h, r, out=h)  # dHuber/dr
    h /= s
    h /= n  # fold the softmax denominator and the mean in once
    w1 *= h
    w2 *= h
    w3 *= h
    grad = np.empty((P.shape[0], 5), dtype=P.dtype)
    grad[:, 0] = w1.sum(axis=1)
    grad[:, 1] = w2.sum(axis=1)
    grad[:, 2] = w3.sum(axis=1)
    w1 *= lnN[None, :]
    w2 *= lnD[None, :]
    grad[:, 3] = -w1.sum(axis=1)
    grad[:, 4] = -w2.sum(axis=1)
    return f, grad


def _batched_lbfgs(
    fun: Any, x0: np.ndarray, *, maxiter: int = 150, memory: int = 10, gtol: float = 1e-9
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """L-BFGS on every row of ``x0`` at once (two-loop recursion and Armijo backtracking,
    vectorised over rows). Rows that converge stop moving.

    Returns:
        ``(x, f, converged)`` with shapes ``(S, P)``, ``(S,)``, ``(S,)``.
    """
    x = x0.copy()
    S, P = x.shape
    f, g = fun(x)
    s_hist = np.zeros((S, memory, P))
    y_hist = np.zeros((S, memory, P))
    rho = np.zeros((S, memory))  # 0 marks an empty slot
    done = ~np.isfinite(f)
    for _it in range(maxiter):
        act = np.flatnonzero(~done)
        if act.size == 0:
            break
        ga = g[act]
        Sa, Ya, Ra = s_hist[act], y_hist[act], rho[act]  # gathered once: (A, m, P), (A, m)
        # two-loop recursion, newest pair in slot 0 (empty slots have rho = 0: no-ops)
        q = ga.copy()
        alph = np.zeros((act.size, memory))
        for i in range(memory):
            alph[:, i] = Ra[:, i] * np.einsum("sp,sp->s", Sa[:, i], q)
            q -= alph[:, i : i + 1] * Ya[:, i]
        sy = np.einsum("sp,sp->s", Sa[:, 0], Ya[:, 0])
        yy = np.einsum("sp,sp->s", Ya[:, 0], Ya[:, 0])
        gamma = np.where((Ra[:, 0] > 0) & (yy > 0), sy / np.where(yy > 0, yy, 1.0), 1.0)
        r = gamma[:, None] * q
        for i in reversed(range(memory)):
            beta = Ra[:, i] * np.einsum("sp,sp->s", Ya[:, i], r)
            r += Sa[:, i] * (alph[:, i] - beta)[:, None]
        d = -r
        gd = np.einsum("sp,sp->s", ga, d)
        bad = ~(gd < 0) | ~np.all(np.isfinite(d), axis=1)
        d[bad] = -ga[bad]
        gd[bad] = -np.einsum("sp,sp->s", ga[bad], ga[bad])
        # first step of a fresh direction: scale to a unit move
        t = np.where(Ra[:, 0] > 0, 1.0, 1.0 / np.maximum(np.sqrt(np.einsum("sp,sp->s", d, d)), 1.0))
        x_new, f_new, g_new = x[act].copy(), f[act].copy(), ga.copy()
        pending = np.ones(act.size, dtype=bool)
        for _ in range(40):
            idx = np.flatnonzero(pending)
            if idx.size == 0:
                break
            cand = x[act[idx]] + t[idx, None] * d[idx]
            fc, gc = fun(cand)
            ok = np.isfinite(fc) & (fc <= f[act[idx]] + 1e-4 * t[idx] * gd[idx])
            acc = idx[ok]
            x_new[acc], f_new[acc], g_new[acc] = cand[ok], fc[ok], gc[ok]
            pending[acc] = False
            t[idx[~ok]] *= 0.5
        moved = ~pending
        s_vec = x_new - x[act]
        y_vec = g_new - ga
        curv = np.einsum("sp,sp->s", s_vec, y_vec)
        upd = moved & (curv > 1e-12)
        rows = act[upd]
        s_hist[rows] = np.roll(s_hist[rows], 1, axis=1)
        y_hist[rows] = np.roll(y_hist[rows], 1, axis=1)
        rho[rows] = np.roll(rho[rows], 1, axis=1)
        s_hist[rows, 0] = s_vec[upd]
        y_hist[rows, 0] = y_vec[upd]
        rho[rows, 0] = 1.0 / curv[upd]
        df = f[act] - f_new
        x[act], f[act], g[act] = x_new, f_new, g_new
        small = (np.abs(g_new).max(axis=1) < gtol) | (
            moved & (df <= 1e-15 * np.maximum(1.0, np.abs(f_new)))
        )
        done[act[small | ~moved]] = True
    return x, f, done


@dataclass
class ChinchillaFit:
    """``L(N, D) = E + A / N^alpha + B / D^beta`` fitted by Approach 3."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    objective: float  # mean Huber loss of log L at the optimum
    n_starts: int
    seconds: float  # wall time of the whole fit (grid + polish)
    extrapolation: Extrapolation | None = None
    top_starts: list[dict[str, float]] = field(default_factory=list)  # polished candidates

    def predict(self, N: ArrayLike, D: ArrayLike) -> np.ndarray:
        n, d = np.asarray(N, dtype=np.float64), np.asarray(D, dtype=np.float64)
        return self.E + self.A / n**self.alpha + self.B / d**self.beta

    def optimal_allocation(self, compute: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Compute-optimal ``(N*, D*)`` for FLOP budgets ``C = 6 N D`` (paper eq. 4)."""
        C = _positive("compute", np.atleast_1d(np.asarray(compute, dtype=np.float64)))
        a, b = self.beta / (self.alpha + self.beta), self.alpha / (self.alpha + self.beta)
        G = (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))
        return G * (C / 6.0) ** a, (C / 6.0) ** b / G


def fit_chinchilla(
    N: ArrayLike,
    D: ArrayLike,
    L: ArrayLike,
    *,
    delta: float = 1e-3,
    holdout: int | float = 0,
    grid: dict[str, Sequence[float]] | None = None,
    maxiter: int = 60,
    polish: int = 8,
    batch_dtype: Any = np.float32,
) -> ChinchillaFit:
    """Chinchilla Approach 3 fit of ``L = E + A/N^alpha + B/D^beta``.

    Minimises the mean Huber loss (``delta``) of ``LSE(a - alpha ln N, b - beta ln D, e) -
    ln L`` from every start of the grid at once (batched L-BFGS, ``maxiter`` iterations, in
    ``batch_dtype``: float32 halves its memory traffic), then polishes the ``polish`` best
    distinct end points in float64 with SciPy's BFGS (for five parameters, L-BFGS with a full
    memory) to convergence.

    Args:
        N: parameter counts, D: training tokens, L: final losses (all positive, same length).
        delta: Huber threshold on log-loss residuals (the paper's 1e-3).
        holdout: the largest-compute (``N * D``) points held out to report extrapolation.
        grid: starting grid (default: :data:`CHINCHILLA_GRID`, 4500 starts).

    Raises:
        ValueError: bad values, mismatched lengths, or fewer than 5 training points.
    """
    t0 = time.perf_counter()
    Nv, Dv, Lv = _positive("N", N), _positive("D", D), _positive("L", L)
    n = _same_length(N=Nv, D=Dv, L=Lv)
    if not delta > 0:
        raise ValueError(f"delta must be > 0, got {delta}")
    k_out = _n_holdout(holdout, n) if n else 0
    train, test = _split(Nv * Dv, k_out)
    _need(len(train), 5, "the Chinchilla law (E, A, B, alpha, beta)")
    lnN, lnD, y = np.log(Nv[train]), np.log(Dv[train]), np.log(Lv[train])

    def fun(P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _huber_objective(P, lnN, lnD, y, delta)

    lnN_b, lnD_b, y_b = (v.astype(batch_dtype) for v in (lnN, lnD, y))

    def fun_batch(P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        fb, gb = _huber_objective(P.astype(batch_dtype), lnN_b, lnD_b, y_b, delta)
        return fb.astype(np.float64), gb.astype(np.float64)

    starts = chinchilla_grid(grid)
    x, f, _ = _batched_lbfgs(fun_batch, starts, maxiter=maxiter)
    order = np.argsort(np.where(np.isfinite(f), f, np.inf))
    picked: list[np.ndarray] = []
    for i in order:
        if not np.isfinite(f[i]):
            break
        if all(np.max(np.abs(x[i] - p)) > 1e-3 for p in picked):
            picked.append(x[i])
        if len(picked) >= polish:
            break
    best_x, best_f = None, np.inf
    tops = []
    for p in picked:
        res = minimize(
            lambda v: tuple(a[0] for a in fun(v[None, :])),
            p,
            jac=True,
            method="BFGS",
            options={"maxiter": 5000, "gtol": 1e-12},
        )
        v, fv = (
            (res.x, float(res.fun))
            if res.fun <= fun(p[None, :])[0][0]
            else (p, float(fun(p[None, :])[0][0]))
        )
        tops.append({"a": v[0], "b": v[1], "e": v[2], "alpha": v[3], "beta": v[4], "objective": fv})
        if fv < best_f:
            best_x, best_f = v, fv
    if best_x is None:
        raise RuntimeError("no start of the grid gave a finite objective")
    a, b, e, al, be = (float(v) for v in best_x)
    fit = ChinchillaFit(
        math.exp(e), math.exp(a), math.exp(b), al, be, best_f, len(starts), 0.0, top_starts=tops
    )
    if k_out:
        fit.extrapolation = Extrapolation.of(fit.predict(Nv[test], Dv[test]), Lv[test])
    fit.seconds = time.perf_counter() - t0
    return fit
