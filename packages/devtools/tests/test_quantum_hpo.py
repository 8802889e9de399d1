"""Amplitude estimation: MLAE beats Monte Carlo 10x at ~50k oracle calls with a ~1/N slope."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from seedbed.devtools.quantum_hpo import (
    QAEHyperparamSearch,
    amplitude_estimate,
    amplitude_estimate_bayesian,
    grover_schedule,
    monte_carlo_estimate,
    oracle_calls,
)

SHOTS = 50


def test_schedule_and_oracle_calls():
    assert grover_schedule(1).tolist() == [0]
    assert grover_schedule(5).tolist() == [0, 1, 2, 4, 8]
    assert oracle_calls([0, 1, 2, 4], 10) == 10 * (1 + 3 + 5 + 9)
    with pytest.raises(ValueError, match="n_powers must be an integer >= 1, got 0"):
        grover_schedule(0)


def test_measurements_follow_grover_probabilities():
    # hits at power m are Binomial(shots, sin^2((2m+1) theta)): check the means
    a = 0.3
    theta = math.asin(math.sqrt(a))
    sched = grover_schedule(5)
    shots = 20000
    est = amplitude_estimate(a, n_powers=5, shots=shots, rng=0)
    expected = shots * np.sin((2 * sched + 1) * theta) ** 2
    sd = np.sqrt(expected * (1 - expected / shots))
    assert np.all(np.abs(np.array(est.hits) - expected) < 5 * sd + 1)
    assert est.oracle_calls == oracle_calls(sched, shots)


def _rmse_curve(powers, trials, rng):
    calls, mlae, mc = [], [], []
    for k in powers:
        err_q, err_c = [], []
        for _ in range(trials):
            a = float(rng.uniform(0.05, 0.95))
            q = amplitude_estimate(a, n_powers=k, shots=SHOTS, rng=rng)
            c = monte_carlo_estimate(a, q.oracle_calls, rng=rng)  # equal oracle calls
            err_q.append(q.estimate - a)
            err_c.append(c.estimate - a)
        calls.append(q.oracle_calls)
        mlae.append(math.sqrt(np.mean(np.square(err_q))))
        mc.append(math.sqrt(np.mean(np.square(err_c))))
    return np.array(calls), np.array(mlae), np.array(mc)


def test_mlae_beats_monte_carlo_at_50k_calls_with_heisenberg_slope():
    rng = np.random.default_rng(1234)
    calls, mlae, mc = _rmse_curve(range(3, 11), 60, rng)
    assert 45_000 <= calls[-1] <= 60_000
    assert mc[-1] / mlae[-1] >= 10.0
    slope = np.polyfit(np.log(calls), np.log(mlae), 1)[0]
    assert -1.1 <= slope <= -0.8
    mc_slope = np.polyfit(np.log(calls), np.log(mc), 1)[0]
    assert -0.65 <= mc_slope <= -0.35  # Monte Carlo: 1/sqrt(N)


@pytest.mark.parametrize(
    "estimator",
    [amplitude_estimate, amplitude_estimate_bayesian],
    ids=["mlae", "bayes"],
)
def test_intervals_cover_the_truth(estimator):
    rng = np.random.default_rng(7)
    hits = 0
    n = 200
    for _ in range(n):
        a = float(rng.uniform(0.05, 0.95))
        e = estimator(a, n_powers=6, shots=SHOTS, confidence=0.9, rng=rng)
        assert 0.0 <= e.ci_low <= e.estimate <= e.ci_high <= 1.0
        hits += e.ci_low <= a <= e.ci_high
    assert 0.8 <= hits / n <= 0.97


def test_bayesian_matches_mlae_accuracy():
    rng = np.random.default_rng(3)
    errs = []
    for _ in range(40):
        a = float(rng.uniform(0.05, 0.95))
        e = amplitude_estimate_bayesian(a, n_powers=8, shots=SHOTS, rng=rng)
        errs.append(e.estimate - a)
    rmse = math.sqrt(np.mean(np.square(errs)))
    assert rmse < 0.2 * math.sqrt(0.25 / oracle_calls(grover_schedule(8), SHOTS))


def test_edge_probabilities_and_validation():
    for a in (0.0, 1.0):
        e = amplitude_estimate(a, n_powers=6, shots=20, rng=0)
        assert e.estimate == pytest.approx(a, abs=1e-6)
    mc = monte_carlo_estimate(0.5, 1000, rng=0)
    assert mc.ci_low < 0.5 < mc.ci_high
    assert mc.oracle_calls == 1000
    with pytest.raises(ValueError, match=r"probability must be a number in \[0, 1\], got 1.5"):
        amplitude_estimate(1.5)
    with pytest.raises(ValueError, match="shots must be an integer >= 1, got 0"):
        amplitude_estimate(0.5, shots=0)
    with pytest.raises(ValueError, match="confidence"):
        amplitude_estimate_bayesian(0.5, confidence=1.0)
    with pytest.raises(ValueError, match="calls must be >= 1"):
        monte_carlo_estimate(0.5, 0)


def _threshold_eval(candidate, omega):
    # succeeds for a fixed fraction of the 256 seeds: p = candidate["p256"] / 256
    return omega < candidate["p256"]


CANDIDATES = [{"p256": 51}, {"p256": 128}, {"p256": 230}, {"p256": 179}]


def test_search_finds_best_candidate_with_intervals():
    search = QAEHyperparamSearch(_threshold_eval, CANDIDATES, n_powers=7, seed=0)
    best, prob = search.search(num_samples=50)
    assert best == {"p256": 230}
    assert prob == pytest.approx(230 / 256, abs=0.01)
    assert len(search.results) == 4
    for r in search.results:
        assert r.true_probability == r.params["p256"] / 256
        assert r.ci_low <= r.estimate <= r.ci_high
        assert r.evaluations == 256
        assert r.oracle_calls == oracle_calls(grover_schedule(7), 50)
    assert search.best_result.params == best
    assert "95% interval" in search.report()


def test_early_stop_and_workers_do_not_change_results():
    one = QAEHyperparamSearch(_threshold_eval, CANDIDATES, seed=5)
    best1, _ = one.search(num_samples=30, early_stop=0.45)
    assert [r.params for r in one.results] == CANDIDATES[:2]
    assert best1 == {"p256": 128}
    many = QAEHyperparamSearch(_threshold_eval, CANDIDATES, seed=5)
    many.search(num_samples=30, early_stop=0.45, max_workers=4)
    assert many.results == one.results


def test_grid_params_bayes_method_and_one_argument_eval():
    rnd = random.Random(0)

    def noisy(candidate):  # a stochastic trial: the seed's one-argument form
        return rnd.random() < candidate["lr"] * candidate["width"]

    search = QAEHyperparamSearch(
        noisy, {"lr": [0.2, 0.8], "width": [0.5, 1.0]}, method="bayes", n_outcomes=400
    )
    best, prob = search.search(num_samples=40, max_workers=2)
    assert best == {"lr": 0.8, "width": 1.0}
    assert len(search.results) == 4
    assert abs(prob - search.best_result.true_probability) < 0.02


def test_search_validation():
    with pytest.raises(TypeError, match="eval_func must be callable"):
        QAEHyperparamSearch(3, CANDIDATES)
    with pytest.raises(ValueError, match="method must be 'mlae' or 'bayes'"):
        QAEHyperparamSearch(_threshold_eval, CANDIDATES, method="grover")
    with pytest.raises(ValueError, match="non-empty sequence"):
        QAEHyperparamSearch(_threshold_eval, {"lr": []})
    with pytest.raises(TypeError, match="mapping of parameters, got int"):
        QAEHyperparamSearch(_threshold_eval, [1, 2])
    s = QAEHyperparamSearch(_threshold_eval, CANDIDATES)
    with pytest.raises(RuntimeError, match="search"):
        s.report()
    with pytest.raises(ValueError, match="num_samples must be an integer >= 1"):
        s.search(num_samples=0)
    with pytest.raises(ValueError, match="early_stop"):
        s.search(early_stop=2.0)
