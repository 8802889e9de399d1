"""Benchmarks that devtools registers under ``seedbed.benchmarks``.

Metrics are plain dicts (devtools imports no sibling package, so not ``Metric``): ``name``,
``value``, ``unit``, ``target``, ``higher_is_better``, ``series``, ``note``.
"""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "BENCHMARKS",
    "autobench_vs_single_pytest",
    "breakpoint_recovery",
    "chinchilla_fit",
    "harness_discovery",
    "qae_vs_monte_carlo",
]


def harness_discovery(full: bool = False) -> list[dict[str, Any]]:
    """How long entry-point discovery (which imports every package's benchmarks) takes."""
    from seedbed.devtools.eval_harness import discover_benchmarks

    t0 = time.perf_counter()
    specs = discover_benchmarks()
    secs = time.perf_counter() - t0
    packages = {s.package for s in specs}
    return [
        {
            "name": "packages_registering_benchmarks",
            "value": float(len(packages)),
            "unit": "",
            "target": 6.0,
            "higher_is_better": True,
            "note": ", ".join(sorted(packages)),
        },
        {
            "name": "discovery_seconds",
            "value": secs,
            "unit": "s",
            "target": 30.0,
            "higher_is_better": False,
            "note": f"{len(specs)} benchmarks",
        },
    ]


def _metric(
    name: str,
    value: float,
    unit: str = "",
    target: float | None = None,
    higher_is_better: bool = True,
    note: str = "",
    series: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "name": name,
        "value": float(value),
        "unit": unit,
        "target": target,
        "higher_is_better": higher_is_better,
        "series": series or [],
        "note": note,
    }


def _series(
    x: Any, y: Any, xlabel: str, ylabel: str, label: str, log: bool = False
) -> dict[str, Any]:
    return {
        "x": [float(v) for v in x],
        "y": [float(v) for v in y],
        "xlabel": xlabel,
        "ylabel": ylabel,
        "label": label,
        "logx": log,
        "logy": log,
    }


def qae_vs_monte_carlo(full: bool = False) -> list[dict[str, Any]]:
    """MLAE against Monte Carlo at equal oracle calls: RMSE over repeated trials.

    Grover powers 0, 1, 2, 4, ..., 2^(K-2) with 50 shots each, K = 3..10 (about 450 to 51,600
    oracle calls); each trial draws a in U(0.05, 0.95) and Monte Carlo spends exactly the
    same number of oracle calls.
    """
    from seedbed.devtools.quantum_hpo import (
        amplitude_estimate,
        amplitude_estimate_bayesian,
        monte_carlo_estimate,
    )

    trials = 400 if full else 60
    rng = np.random.default_rng(0)
    calls, rm, rc, rb = [], [], [], []
    for k in range(3, 11):
        eq, ec, eb = [], [], []
        for t in range(trials):
            a = float(rng.uniform(0.05, 0.95))
            q = amplitude_estimate(a, n_powers=k, shots=50, rng=rng)
            eq.append(q.estimate - a)
            ec.append(monte_carlo_estimate(a, q.oracle_calls, rng=rng).estimate - a)
            if full or t < trials // 3:
                eb.append(
                    amplitude_estimate_bayesian(a, n_powers=k, shots=50, rng=rng).estimate - a
                )
        calls.append(q.oracle_calls)
        rm.append(math.sqrt(np.mean(np.square(eq))))
        rc.append(math.sqrt(np.mean(np.square(ec))))
        rb.append(math.sqrt(np.mean(np.square(eb))))
    lc = np.log(calls)
    slope_q = float(np.polyfit(lc, np.log(rm), 1)[0])
    slope_c = float(np.polyfit(lc, np.log(rc), 1)[0])
    curves = [
        _series(calls, rm, "oracle calls", "RMSE of a", "MLAE", log=True),
        _series(calls, rb, "oracle calls", "RMSE of a", "Bayesian AE", log=True),
        _series(calls, rc, "oracle calls", "RMSE of a", "Monte Carlo", log=True),
    ]
    note = f"{trials} trials per point, 50 shots per Grover power, a ~ U(0.05, 0.95)"
    return [
        _metric(
            "rmse_ratio_mc_over_mlae_at_50k",
            rc[-1] / rm[-1],
            "x",
            10.0,
            True,
            f"at {calls[-1]} oracle calls: MC {rc[-1]:.2e}, MLAE {rm[-1]:.2e}, "
            f"Bayes {rb[-1]:.2e}; {note}",
            curves,
        ),
        _metric(
            "mlae_loglog_slope",
            slope_q,
            "",
            -0.8,
            False,
            "log RMSE vs log calls, K = 3..10; accepted band [-1.1, -0.8] (1/N is -1)",
        ),
        _metric("monte_carlo_loglog_slope", slope_c, "", None, False, "1/sqrt(N) is -0.5"),
    ]


_BENCH_MODULE = """
import time

import pytest


@pytest.mark.parametrize("k", range({n_tests}))
def test_work(k):
    time.sleep({sleep})
    assert sum(range(1000)) == 499500
"""


def autobench_vs_single_pytest(full: bool = False) -> list[dict[str, Any]]:
    """Wall time of AutoBench (one process per module, -j 2) against one pytest process.

    A generated suite of modules whose tests sleep (stand-ins for I/O-bound work) runs
    both ways in the same environment (pytest plugin autoloading off in both, so start-up
    cost is pytest's own). The ratio is what isolation costs (> 1) or parallelism buys (< 1).
    """
    from seedbed.devtools.autobench import run_autobench

    n_modules, n_tests, sleep = (12, 8, 0.05) if full else (6, 4, 0.05)
    env = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    out = []
    with tempfile.TemporaryDirectory(prefix="autobench-bench-") as tmp:
        root = Path(tmp)
        for m in range(n_modules):
            (root / f"test_mod{m:02d}.py").write_text(
                textwrap.dedent(_BENCH_MODULE.format(n_tests=n_tests, sleep=sleep))
            )
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", str(root), "-q", "-p", "no:cacheprovider"],
            capture_output=True,
            text=True,
            cwd=tmp,
            env={**os.environ, **env},
            check=False,
        )
        single = time.perf_counter() - t0
        jobs_list = (1, 2, 4) if full else (2,)
        times = {}
        for jobs in jobs_list:
            t0 = time.perf_counter()
            results = run_autobench(root, jobs=jobs, timeout=120, env=env)
            times[jobs] = time.perf_counter() - t0
        correct = proc.returncode == 0 and all(
            r.status == "passed" and r.passed == n_tests for r in results
        )
    suite = f"{n_modules} modules x {n_tests} tests sleeping {sleep} s"
    out.append(_metric("single_pytest_seconds", single, "s", None, False, suite))
    out.append(_metric("autobench_j2_seconds", times[2], "s", None, False, suite))
    out.append(
        _metric(
            "autobench_j2_over_single_pytest",
            times[2] / single,
            "x",
            None,
            False,
            "wall-time ratio, measured side by side in one run",
            [_series(list(times), list(times.values()), "jobs (-j)", "wall time (s)", "AutoBench")]
            if full
            else None,
        )
    )
    out.append(
        _metric("scoreboard_correct", 1.0 if correct else 0.0, "", 1.0, True, "every module passed")
    )
    return out


def _chinchilla_csv() -> Path | None:
    env = os.environ.get("SEEDBED_CHINCHILLA_CSV")
    name = "epoch_chinchilla_svg_extracted.csv"
    candidates = [Path(env)] if env else []
    candidates += [Path.cwd() / "data" / name, Path.cwd().parent / "shared" / "data" / name]
    return next((p for p in candidates if p.is_file()), None)


def chinchilla_fit(full: bool = False) -> list[dict[str, Any]]:
    """Chinchilla Approach 3 on synthetic data with known truth: time and recovered exponents.

    Truth (Hoffmann et al.): E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28; a 12 x 12 grid of
    N in [1e7, 3e10] and D in [1e9, 3e12] with 0.5 % log-normal noise; the full 4500-start
    grid. Full mode repeats over seeds and, when the Epoch AI extraction of the paper's data is
    found (``SEEDBED_CHINCHILLA_CSV``), fits it too.
    """
    from seedbed.devtools.scaling_law import fit_chinchilla

    truth = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
    grid_n, grid_d = np.meshgrid(np.logspace(7, 10.5, 12), np.logspace(9, 12.5, 12))
    N, D = grid_n.ravel(), grid_d.ravel()
    L0 = truth["E"] + truth["A"] / N ** truth["alpha"] + truth["B"] / D ** truth["beta"]
    seeds = range(5) if full else range(1)
    secs, da, db, fits = [], [], [], []
    for seed in seeds:
        L = L0 * np.exp(0.005 * np.random.default_rng(seed).standard_normal(N.size))
        fit = fit_chinchilla(N, D, L, holdout=10)
        fits.append(fit)
        secs.append(fit.seconds)
        da.append(abs(fit.alpha - truth["alpha"]))
        db.append(abs(fit.beta - truth["beta"]))
    f0 = fits[0]
    where = f"{len(seeds)} seed(s), worst case; {f0.n_starts} starts, 144 points"
    out = [
        _metric("fit_seconds", max(secs), "s", 10.0, False, f"full grid, {where}"),
        _metric("alpha_abs_error", max(da), "", 0.01, False, where),
        _metric("beta_abs_error", max(db), "", 0.01, False, where),
        _metric(
            "extrapolation_mean_rel_error",
            f0.extrapolation.mean_abs_rel_error if f0.extrapolation else float("nan"),
            "",
            None,
            False,
            "10 largest-compute points held out (seed 0)",
        ),
        _metric(
            "recovered_E",
            f0.E,
            "",
            None,
            True,
            f"seed 0: E={f0.E:.3f} A={f0.A:.1f} B={f0.B:.1f} alpha={f0.alpha:.4f} "
            f"beta={f0.beta:.4f} (truth 1.69, 406.4, 410.7, 0.34, 0.28)",
        ),
    ]
    path = _chinchilla_csv() if full else None
    if path is not None:
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        Nc = np.array([float(r["Model Size"]) for r in rows])
        Cc = np.array([float(r["Training FLOP"]) for r in rows])
        Lc = np.array([float(r["loss"]) for r in rows])
        Dc = Cc / (6 * Nc)
        keep = Lc < np.sort(Lc)[-5]  # without the 5 highest-loss runs
        for label, mask in (("all", np.ones_like(keep)), ("no_top5_loss", keep)):
            fc = fit_chinchilla(Nc[mask], Dc[mask], Lc[mask])
            out.append(
                _metric(
                    f"epoch_data_{label}_alpha",
                    fc.alpha,
                    "",
                    None,
                    True,
                    f"{int(mask.sum())} points of {path.name}: E={fc.E:.3f} A={fc.A:.1f} "
                    f"B={fc.B:.1f} alpha={fc.alpha:.4f} beta={fc.beta:.4f} in {fc.seconds:.1f} s; "
                    "Besiroglu et al. 2024 report E=1.82 A=482.01 B=2085.43 alpha=0.3478 "
                    "beta=0.3658",
                )
            )
    return out


def breakpoint_recovery(full: bool = False) -> list[dict[str, Any]]:
    """Two-breakpoint broken power laws with known truth: worst error over seeds.

    80 points over C in [1e15, 1e23], breaks at 1e18 and 1e21, slopes -0.05, -0.20, -0.08,
    0.2 % log-normal noise; breakpoints searched from scratch (no guess).
    """
    from seedbed.devtools.scaling_law import BreakpointScalingLaw

    C = np.logspace(15, 23, 80)
    breaks, slopes = np.array([1e18, 1e21]), np.array([-0.05, -0.20, -0.08])
    x = np.log(C)
    y = np.log(10.0) + slopes[0] * (x - x[0])
    for b, s0, s1 in zip(breaks, slopes[:-1], slopes[1:]):
        y += (s1 - s0) * np.maximum(x - np.log(b), 0.0)
    n_seeds = 40 if full else 10
    be, se = [], []
    for seed in range(n_seeds):
        L = np.exp(y + 0.002 * np.random.default_rng(seed).standard_normal(C.size))
        law = BreakpointScalingLaw(n_breaks=2).fit(C, L)
        be.append(float(np.max(np.abs(np.array(law.break_compute) / breaks - 1))))
        se.append(float(np.max(np.abs(np.array(law.slopes) - slopes))))
    note = f"worst of {n_seeds} seeds"
    return [
        _metric("breakpoint_max_rel_error", max(be), "", 0.05, False, note),
        _metric("slope_max_abs_error", max(se), "", 0.02, False, note),
    ]


BENCHMARKS: list[Callable[..., list[dict[str, Any]]]] = [
    harness_discovery,
    qae_vs_monte_carlo,
    autobench_vs_single_pytest,
    chinchilla_fit,
    breakpoint_recovery,
]
