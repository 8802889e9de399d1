from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from seedbed.agents_worldmodel import GridWorldEnv, value_iteration


def test_passes_gymnasium_checker():
    check_env(GridWorldEnv(), skip_render_check=True)


def test_transition_matrix_is_stochastic():
    p = GridWorldEnv(size=4).transition_matrix()
    np.testing.assert_allclose(p.sum(-1), 1.0)


def test_value_iteration_policy_reaches_goal_deterministically():
    env = GridWorldEnv(size=5, slip=0.0, walls=[])
    _, pi = value_iteration(env)
    obs, _ = env.reset(seed=0)
    steps = 0
    done = False
    while not done:
        obs, _, done, trunc, _ = env.step(np.int64(pi[int(obs)]))
        steps += 1
        assert not trunc
    assert steps == 8  # Manhattan distance on an empty 5x5 grid


def test_bad_input():
    with pytest.raises(ValueError, match="size"):
        GridWorldEnv(size=1)
    with pytest.raises(ValueError, match="wall"):
        GridWorldEnv(size=3, walls=[(0, 0)])
    env = GridWorldEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(np.int64(7))
