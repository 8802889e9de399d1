"""Benchmarks that agents-worldmodel registers under ``seedbed.benchmarks``."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from seedbed.agents_worldmodel.envs import GridWorldEnv, value_iteration
from seedbed.core_layers.benchmarking import Metric

__all__ = ["BENCHMARKS", "gridworld_planning"]


def _mean_return(env: GridWorldEnv, policy: Callable[[int], int], episodes: int) -> float:
    total = 0.0
    for ep in range(episodes):
        obs, _ = env.reset(seed=ep)
        done = False
        while not done:
            obs, r, term, trunc, _ = env.step(np.int64(policy(int(obs))))
            total += r
            done = term or trunc
    return total / episodes


def gridworld_planning(full: bool = False) -> list[dict[str, Any]]:
    """Value-iteration policy against a uniform random policy on the slippery grid world."""
    size, episodes = (10, 2000) if full else (5, 300)
    env = GridWorldEnv(size=size)
    _, pi = value_iteration(env)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    opt = _mean_return(env, lambda s: int(pi[s]), episodes)
    steps_s = time.perf_counter() - t0
    rand = _mean_return(env, lambda s: int(rng.integers(4)), episodes)
    note = f"{size}x{size} grid, slip 0.1, {episodes} episodes"
    return [
        Metric("optimal_minus_random_return", opt - rand, "", 0.1, True, note=note).as_dict(),
        Metric(
            "optimal_policy_episodes_per_s", episodes / steps_s, "ep/s", None, note=note
        ).as_dict(),
    ]


BENCHMARKS: list[Callable[..., list[dict[str, Any]]]] = [gridworld_planning]
