"""Amplitude-estimation hyper-parameter search (A-4), on a simulated quantum oracle.

A quantum state-preparation circuit ``A|0> = sqrt(1-a)|bad> + sqrt(a)|good>`` encodes a
success probability ``a = sin^2(theta)``. Measuring after ``m`` Grover iterations ``Q^m A|0>``
gives "good" with probability ``sin^2((2m+1) theta)`` at a cost of ``2m + 1`` oracle calls.

- :func:`amplitude_estimate` is maximum-likelihood amplitude estimation (MLAE; Suzuki et al.
  2020, "Amplitude estimation without phase estimation"): Grover powers ``m_k = 0, 1, 2, 4,
  ..., 2^(K-2)``, ``shots`` measurements each, the likelihood maximised over ``theta``. Its
  error falls as ~1/N in the number of oracle calls N, against Monte Carlo's 1/sqrt(N).
- :func:`amplitude_estimate_bayesian` puts a posterior over ``theta`` on a grid (uniform prior
  on ``a``) from the same measurements, and reports the posterior mean and a credible interval.
- :func:`monte_carlo_estimate` is the classical baseline at an equal number of oracle calls.

The measurement outcomes are simulated exactly: binomial draws from ``sin^2((2m+1) theta)``
for the true ``a``. Nothing here runs on quantum hardware; the oracle-call counts are what a
quantum computer would spend.

:class:`QAEHyperparamSearch` (seed 002's API) scores each candidate's success probability by
amplitude estimation and returns the best, with confidence intervals for every candidate.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import product
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import xlogy
from scipy.stats import norm

__all__ = [
    "AmplitudeEstimate",
    "CandidateResult",
    "QAEHyperparamSearch",
    "amplitude_estimate",
    "amplitude_estimate_bayesian",
    "grover_schedule",
    "monte_carlo_estimate",
    "oracle_calls",
]

RngLike = np.random.Generator | int | None


@dataclass(frozen=True)
class AmplitudeEstimate:
    """An estimate of a success probability ``a`` and its interval."""

    estimate: float  # estimated a in [0, 1]
    ci_low: float  # lower end of the confidence (or credible) interval
    ci_high: float  # upper end
    oracle_calls: int  # oracle applications spent, sum over shots of (2m + 1)
    method: str  # "mlae", "bayes" or "monte_carlo"
    theta: float = float("nan")  # estimated angle, a = sin^2(theta)
    schedule: tuple[int, ...] = ()  # Grover powers m_k
    hits: tuple[int, ...] = ()  # "good" outcomes per power
    shots: int = 0  # measurements per power
    confidence: float = 0.95


def grover_schedule(n_powers: int) -> np.ndarray:
    """The exponential MLAE schedule ``[0, 1, 2, 4, ..., 2^(n_powers-2)]``: ``(n_powers,)``."""
    if not isinstance(n_powers, (int, np.integer)) or n_powers < 1:
        raise ValueError(f"n_powers must be an integer >= 1, got {n_powers!r}")
    return np.array([0] + [2**k for k in range(n_powers - 1)], dtype=np.int64)


def oracle_calls(schedule: Sequence[int] | np.ndarray, shots: int) -> int:
    """Oracle applications of measuring each power ``shots`` times: ``shots * sum(2m + 1)``."""
    m = np.asarray(schedule, dtype=np.int64)
    return int(shots * np.sum(2 * m + 1))


def _rng(rng: RngLike) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _check(probability: float, n_powers: int, shots: int, confidence: float) -> None:
    if not isinstance(probability, (int, float, np.floating)) or not 0.0 <= probability <= 1.0:
        raise ValueError(f"probability must be a number in [0, 1], got {probability!r}")
    grover_schedule(n_powers)
    if not isinstance(shots, (int, np.integer)) or shots < 1:
        raise ValueError(f"shots must be an integer >= 1, got {shots!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _measure(
    probability: float, schedule: np.ndarray, shots: int, rng: np.random.Generator
) -> np.ndarray:
    """Exact simulation: ``(K,)`` binomial counts of "good" with p = sin^2((2m+1) theta)."""
    theta = math.asin(math.sqrt(probability))
    p = np.sin((2 * schedule + 1) * theta) ** 2
    return rng.binomial(shots, np.clip(p, 0.0, 1.0))


def _loglik(theta: np.ndarray, schedule: np.ndarray, hits: np.ndarray, shots: int) -> np.ndarray:
    """Log-likelihood of angles ``theta`` (G,) given the counts: ``(G,)``."""
    k = (2 * schedule + 1)[None, :]  # (1, K)
    p = np.sin(k * theta[:, None]) ** 2  # (G, K)
    p = np.clip(p, 1e-300, 1.0 - 1e-16)
    return (xlogy(hits[None, :], p) + xlogy(shots - hits[None, :], 1.0 - p)).sum(axis=1)


def _fisher_sigma(schedule: np.ndarray, shots: int) -> float:
    """Standard deviation of the MLE of theta: 1/sqrt(shots * sum 4 (2m+1)^2), any theta."""
    return 1.0 / math.sqrt(shots * float(np.sum(4.0 * (2 * schedule + 1) ** 2)))


def _likelihood_grid(
    schedule: np.ndarray, hits: np.ndarray, shots: int, *, cut: float = 25.0
) -> tuple[np.ndarray, np.ndarray]:
    """Log-likelihood on a grid that follows the likelihood as the powers grow.

    Stage 1 scans [0, pi/2] with the first two powers. Each later stage adds one power and
    re-grids the hull of the angles whose log-likelihood so far is within ``cut`` of its
    maximum (the rest has relative likelihood below e^-25), with spacing fine enough for
    both the new power's fringes (1/16 of a fringe) and the peak (1/8 of a Fisher sigma).

    Returns:
        ``theta`` ``(G,)`` and the log-likelihood of all the powers there ``(G,)``.
    """
    k0 = min(2, len(schedule))
    theta = np.linspace(0.0, math.pi / 2, 4096)
    ll = _loglik(theta, schedule[:k0], hits[:k0], shots)
    for k in range(k0, len(schedule) + 1):
        keep = theta[ll >= ll.max() - cut]
        step = theta[1] - theta[0]
        lo, hi = max(keep.min() - step, 0.0), min(keep.max() + step, math.pi / 2)
        if k == len(schedule) and k > k0:
            break
        m = schedule[min(k, len(schedule) - 1)]
        sigma = _fisher_sigma(schedule[: k + 1], shots)
        n = int(max(512, 16 * (hi - lo) * (2 * m + 1) / math.pi, 8 * (hi - lo) / sigma))
        theta = np.linspace(lo, hi, n)
        ll = _loglik(theta, schedule[: k + 1], hits[: k + 1], shots)
    return theta, ll


def _a_interval(theta_lo: float, theta_hi: float) -> tuple[float, float]:
    lo = min(max(theta_lo, 0.0), math.pi / 2)
    hi = min(max(theta_hi, 0.0), math.pi / 2)
    return math.sin(lo) ** 2, math.sin(hi) ** 2


def amplitude_estimate(
    probability: float,
    *,
    n_powers: int = 8,
    shots: int = 100,
    confidence: float = 0.95,
    rng: RngLike = None,
) -> AmplitudeEstimate:
    """Maximum-likelihood amplitude estimation of ``probability`` on a simulated oracle.

    Args:
        probability: the true success probability ``a`` that the simulated circuit encodes.
        n_powers: number of Grover powers K (schedule 0, 1, 2, 4, ..., 2^(K-2)).
        shots: measurements per power.
        confidence: level of the Fisher-information interval.
        rng: a numpy Generator or a seed for the simulated measurements.

    Returns:
        The MLE of ``a`` with a Fisher interval: the information about ``theta`` is exactly
        ``shots * sum(4 (2m+1)^2)``, whatever ``theta`` is.
    """
    _check(probability, n_powers, shots, confidence)
    schedule = grover_schedule(n_powers)
    hits = _measure(float(probability), schedule, shots, _rng(rng))
    grid, ll = _likelihood_grid(schedule, hits, shots)
    g = int(np.argmax(ll))
    step = grid[1] - grid[0]
    lo, hi = max(grid[g] - step, 0.0), min(grid[g] + step, math.pi / 2)
    res = minimize_scalar(
        lambda t: -float(_loglik(np.array([t]), schedule, hits, shots)[0]),
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 1e-12},
    )
    theta = float(res.x) if -res.fun >= ll[g] else float(grid[g])
    sigma = _fisher_sigma(schedule, shots)
    z = float(norm.ppf(0.5 + confidence / 2))
    ci = _a_interval(theta - z * sigma, theta + z * sigma)
    return AmplitudeEstimate(
        estimate=math.sin(theta) ** 2,
        ci_low=ci[0],
        ci_high=ci[1],
        oracle_calls=oracle_calls(schedule, shots),
        method="mlae",
        theta=theta,
        schedule=tuple(int(m) for m in schedule),
        hits=tuple(int(h) for h in hits),
        shots=shots,
        confidence=confidence,
    )


def amplitude_estimate_bayesian(
    probability: float,
    *,
    n_powers: int = 8,
    shots: int = 100,
    confidence: float = 0.95,
    rng: RngLike = None,
) -> AmplitudeEstimate:
    """Bayesian amplitude estimation: a posterior over ``theta`` from the MLAE measurements.

    The prior is uniform on ``a`` (density ``sin(2 theta)`` on ``theta``); the posterior is
    evaluated on a grid that follows the likelihood power by power and resolves its peak
    (angles left out have relative likelihood below e^-25). The estimate is the posterior
    mean of ``a`` and the interval is the equal-tailed credible interval.
    """
    _check(probability, n_powers, shots, confidence)
    schedule = grover_schedule(n_powers)
    hits = _measure(float(probability), schedule, shots, _rng(rng))
    theta, ll = _likelihood_grid(schedule, hits, shots)
    logpost = ll + np.log(np.maximum(np.sin(2 * theta), 1e-300))
    w = np.exp(logpost - logpost.max())
    w /= w.sum()
    a = np.sin(theta) ** 2  # increasing in theta on [0, pi/2]
    cdf = np.cumsum(w)
    tail = (1.0 - confidence) / 2
    lo = float(a[min(np.searchsorted(cdf, tail), len(a) - 1)])
    hi = float(a[min(np.searchsorted(cdf, 1.0 - tail), len(a) - 1)])
    mean = float(np.sum(w * a))
    return AmplitudeEstimate(
        estimate=mean,
        ci_low=lo,
        ci_high=hi,
        oracle_calls=oracle_calls(schedule, shots),
        method="bayes",
        theta=math.asin(math.sqrt(min(max(mean, 0.0), 1.0))),
        schedule=tuple(int(m) for m in schedule),
        hits=tuple(int(h) for h in hits),
        shots=shots,
        confidence=confidence,
    )


def monte_carlo_estimate(
    probability: float, calls: int, *, confidence: float = 0.95, rng: RngLike = None
) -> AmplitudeEstimate:
    """Classical Monte Carlo: ``calls`` Bernoulli draws (one oracle call each), Wilson interval."""
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"probability must be in [0, 1], got {probability!r}")
    if calls < 1:
        raise ValueError(f"calls must be >= 1, got {calls}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    k = int(_rng(rng).binomial(calls, probability))
    p = k / calls
    z = float(norm.ppf(0.5 + confidence / 2))
    denom = 1 + z * z / calls
    centre = (p + z * z / (2 * calls)) / denom
    half = z * math.sqrt(p * (1 - p) / calls + z * z / (4 * calls * calls)) / denom
    return AmplitudeEstimate(
        estimate=p,
        ci_low=max(0.0, centre - half),
        ci_high=min(1.0, centre + half),
        oracle_calls=calls,
        method="monte_carlo",
        shots=calls,
        confidence=confidence,
    )


# --------------------------------------------------------------------------------------------
# Hyper-parameter search
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CandidateResult:
    """The amplitude estimate of one candidate's success probability."""

    params: dict[str, Any]
    estimate: float
    ci_low: float
    ci_high: float
    oracle_calls: int  # quantum oracle calls spent on this candidate
    evaluations: int  # classical eval_func calls made to build the simulated state
    true_probability: float  # the simulated state's exact success probability


def _candidates(
    params: Mapping[str, Sequence[Any]] | Iterable[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    if isinstance(params, Mapping):
        keys = list(params)
        for k in keys:
            v = params[k]
            if isinstance(v, (str, bytes)) or not isinstance(v, Sequence) or len(v) == 0:
                raise ValueError(f"params[{k!r}] must be a non-empty sequence of values, got {v!r}")
        return [dict(zip(keys, vals)) for vals in product(*(params[k] for k in keys))]
    out = []
    for c in params:
        if not isinstance(c, Mapping):
            raise TypeError(
                f"each candidate must be a mapping of parameters, got {type(c).__name__}"
            )
        out.append(dict(c))
    if not out:
        raise ValueError("params holds no candidate")
    return out


def _arity(fn: Callable[..., Any]) -> int:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without a signature: assume (candidate, omega)
        return 2
    try:
        sig.bind(None, None)
        return 2
    except TypeError:
        sig.bind(None)
        return 1


@dataclass
class QAEHyperparamSearch:
    """Pick the candidate with the highest success probability, estimated by amplitude estimation.

    ``eval_func(candidate, omega) -> bool`` says whether ``candidate`` succeeds for the random
    seed ``omega`` in ``range(n_outcomes)``. The simulated state-preparation circuit puts
    ``omega`` in uniform superposition, so the amplitude estimation measures the fraction of
    seeds that succeed; the simulator finds that fraction exactly by enumerating the seeds
    (``n_outcomes`` classical calls per candidate, reported as ``evaluations``). A one-argument
    ``eval_func(candidate) -> bool`` is a stochastic trial: it is called ``n_outcomes`` times
    and those draws define the state.

    Args:
        eval_func: the success test, see above.
        params: a list of candidate dicts, or a dict of value lists (its grid is searched).
        method: "mlae" (maximum likelihood) or "bayes" (posterior mean, credible interval).
        n_powers: Grover powers per estimate (schedule 0, 1, 2, 4, ...).
        n_outcomes: random seeds enumerated to build each candidate's state.
        confidence: interval level.
        seed: seed of the simulated measurements (candidate k uses ``seed + k``).
    """

    eval_func: Callable[..., Any]
    params: Any
    method: str = "mlae"
    n_powers: int = 6
    n_outcomes: int = 256
    confidence: float = 0.95
    seed: int = 0
    results: list[CandidateResult] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        if not callable(self.eval_func):
            raise TypeError(f"eval_func must be callable, got {type(self.eval_func).__name__}")
        if self.method not in ("mlae", "bayes"):
            raise ValueError(f"method must be 'mlae' or 'bayes', got {self.method!r}")
        if self.n_outcomes < 1:
            raise ValueError(f"n_outcomes must be >= 1, got {self.n_outcomes}")
        grover_schedule(self.n_powers)
        self.candidates = _candidates(self.params)
        self._arity = _arity(self.eval_func)

    def success_probability(self, candidate: Mapping[str, Any]) -> float:
        """The simulated state's success probability for ``candidate``."""
        if self._arity == 2:
            wins = sum(bool(self.eval_func(candidate, omega)) for omega in range(self.n_outcomes))
        else:
            wins = sum(bool(self.eval_func(candidate)) for _ in range(self.n_outcomes))
        return wins / self.n_outcomes

    def _score(self, k: int, shots: int) -> CandidateResult:
        cand = self.candidates[k]
        p = self.success_probability(cand)
        fn = amplitude_estimate if self.method == "mlae" else amplitude_estimate_bayesian
        est = fn(
            p,
            n_powers=self.n_powers,
            shots=shots,
            confidence=self.confidence,
            rng=np.random.default_rng([self.seed, k]),
        )
        return CandidateResult(
            dict(cand), est.estimate, est.ci_low, est.ci_high, est.oracle_calls, self.n_outcomes, p
        )

    def search(
        self, num_samples: int = 100, early_stop: float | None = None, max_workers: int = 1
    ) -> tuple[dict[str, Any], float]:
        """Estimate each candidate's success probability; return the best and its estimate.

        Args:
            num_samples: measurement shots per Grover power.
            early_stop: stop at the first candidate (in order) whose estimate reaches this.
            max_workers: candidates evaluated concurrently (threads); the results do not
                depend on it.

        Returns:
            ``(best candidate, its estimated success probability)``; every scored candidate,
            with its confidence interval, is in ``self.results``.
        """
        if not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
            raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}")
        if early_stop is not None and not 0.0 <= early_stop <= 1.0:
            raise ValueError(f"early_stop must be in [0, 1] or None, got {early_stop}")
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers}")
        results: list[CandidateResult] = []
        with ThreadPoolExecutor(max_workers=max_workers) as pool:
            futures = [
                pool.submit(self._score, k, num_samples) for k in range(len(self.candidates))
            ]
            for fut in futures:
                r = fut.result()
                results.append(r)
                if early_stop is not None and r.estimate >= early_stop:
                    for f in futures:
                        f.cancel()
                    break
        self.results = results
        best = max(results, key=lambda r: r.estimate)
        return dict(best.params), best.estimate

    @property
    def best_result(self) -> CandidateResult:
        if not self.results:
            raise RuntimeError("call search() first")
        return max(self.results, key=lambda r: r.estimate)

    def report(self) -> str:
        """A table of every scored candidate with its estimate and interval."""
        if not self.results:
            raise RuntimeError("call search() first")
        pct = f"{100 * self.confidence:g}%"
        lines = [
            f"{'candidate':40s}  {'estimate':>8s}  {pct + ' interval':>20s}  {'oracle calls':>12s}"
        ]
        for r in self.results:
            cand = ", ".join(f"{k}={v}" for k, v in r.params.items())
            lines.append(
                f"{cand[:40]:40s}  {r.estimate:8.4f}  [{r.ci_low:7.4f}, {r.ci_high:7.4f}]    {r.oracle_calls:12d}"
            )
        return "\n".join(lines)
