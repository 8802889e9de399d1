"""Refactor agent: learns the known best action per state; TD update, epsilon-greedy, save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest

from seedbed.devtools.autobench import ModuleResult
from seedbed.devtools.meta_rl_refactor import (
    ACTIONS,
    FEATURE_NAMES,
    LinearRefactorAgent,
    RefactorAgent,
    SimulatedRefactorEnv,
    scoreboard_features,
    scoreboard_reward,
    scoreboard_state,
)


def _board(*rows: tuple[str, str, int, int, float]) -> list[ModuleResult]:
    return [ModuleResult(m, st, p, f, seconds=t) for m, st, p, f, t in rows]


def test_simulated_boards_map_back_to_their_situation():
    env = SimulatedRefactorEnv(seed=3)
    assert len(env.situations) == 15
    for s in env.situations:
        before, after = env.boards(s)
        assert scoreboard_state(scoreboard_features(before, after)) == (
            s.rate,
            s.time,
            s.broken,
            s.hard,
        )
        assert env.best_action(before, after) == env.best_for(s)
    assert {env.best_for(s) for s in env.situations} == set(ACTIONS)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tabular_agent_learns_best_action_per_state(seed):
    env = SimulatedRefactorEnv(seed=seed, noise=0.3)
    agent = RefactorAgent(epsilon=0.2, alpha=0.1, gamma=0.0, seed=seed)
    for _ in range(3000):
        before, after = env.reset()
        state = scoreboard_state(scoreboard_features(before, after))
        action = agent.select_action(state)
        agent.update(state, action, env.step(action))
    hits = 0
    for s in env.situations:
        before, after = env.boards(s)
        state = scoreboard_state(scoreboard_features(before, after))
        hits += agent.select_action(state, greedy=True) == env.best_for(s)
    assert hits / len(env.situations) >= 0.9


def test_td_update_math():
    agent = RefactorAgent(alpha=0.5, gamma=0.9, epsilon=0.0)
    assert agent.update("s", "replace", 1.0) == 1.0
    assert agent.q_values("s")[0] == 0.5
    # bootstrapped target: r + gamma * max Q(s') = 0 + 0.9 * 0.5
    td = agent.update("t", "rollback", 0.0, next_state="s", done=False)
    assert td == pytest.approx(0.45)
    assert agent.q_values("t")[2] == pytest.approx(0.225)
    with pytest.raises(ValueError, match="next_state is required"):
        agent.update("t", "rollback", 0.0, done=False)
    with pytest.raises(ValueError, match="action must be one of"):
        agent.update("t", "delete", 0.0)
    with pytest.raises(ValueError, match="reward must be finite"):
        agent.update("t", "replace", float("nan"))


def test_epsilon_greedy():
    agent = RefactorAgent(epsilon=0.0, seed=0)
    agent.update("s", "refactor", 1.0)
    assert {agent.select_action("s") for _ in range(50)} == {"refactor"}
    explorer = RefactorAgent(epsilon=1.0, seed=0)
    explorer.update("s", "refactor", 1.0)
    counts = {a: 0 for a in ACTIONS}
    for _ in range(3000):
        counts[explorer.select_action("s")] += 1
    assert all(800 < c < 1200 for c in counts.values())
    assert explorer.select_action("s", greedy=True) == "refactor"


def test_save_and_load_round_trip(tmp_path):
    agent = RefactorAgent(alpha=0.3, gamma=0.5, epsilon=0.05, seed=0)
    agent.update((1, 0, 0, 0), "replace", 1.0)
    agent.update((-1, 1, 1, 0), "rollback", 2.0)
    path = tmp_path / "q.json"
    agent.save(path)
    back = RefactorAgent.load(path)
    assert (back.alpha, back.gamma, back.epsilon, back.actions) == (0.3, 0.5, 0.05, ACTIONS)
    assert set(back.q) == set(agent.q)
    for k in agent.q:
        np.testing.assert_array_equal(back.q[k], agent.q[k])
    lin = LinearRefactorAgent(seed=0)
    lin.update(np.ones(len(FEATURE_NAMES)), "refactor", 1.0)
    lin.save(tmp_path / "w.json")
    np.testing.assert_array_equal(LinearRefactorAgent.load(tmp_path / "w.json").w, lin.w)
    with pytest.raises(ValueError, match="expected a saved tabular agent, got kind 'linear'"):
        RefactorAgent.load(tmp_path / "w.json")
    bad = json.loads(path.read_text())
    bad["q"][0][1] = [1.0]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="has 1 values, expected 3"):
        RefactorAgent.load(tmp_path / "bad.json")


def test_linear_agent_learns_a_linear_reward():
    # reward of action a is w_true[a] . phi: the linear Q-function can represent it exactly
    rng = np.random.default_rng(0)
    w_true = rng.standard_normal((3, 4))
    agent = LinearRefactorAgent(4, alpha=0.05, gamma=0.0, epsilon=0.3, seed=0)
    for _ in range(4000):
        phi = np.r_[1.0, rng.standard_normal(3)]
        a = agent.select_action(phi)
        agent.update(phi, a, float(w_true[ACTIONS.index(a)] @ phi) + 0.1 * rng.standard_normal())
    np.testing.assert_allclose(agent.w, w_true, atol=0.1)
    with pytest.raises(ValueError, match=r"features must have shape \(4,\), got \(3,\)"):
        agent.q_values(np.ones(3))


def test_reward_adapter_signs():
    before = _board(("a", "passed", 10, 0, 1.0), ("b", "failed", 8, 2, 1.0))
    better = _board(("a", "passed", 10, 0, 1.0), ("b", "passed", 10, 0, 1.0))
    slower = _board(("a", "passed", 10, 0, 2.0), ("b", "failed", 8, 2, 2.0))
    broken = _board(("a", "failed", 5, 5, 1.0), ("b", "failed", 8, 2, 1.0))
    crashed = [ModuleResult("a", "crashed", errors=1, seconds=1.0), before[1]]
    assert scoreboard_reward(before, before) == 0.0
    assert scoreboard_reward(before, better) == pytest.approx(0.1)
    assert scoreboard_reward(before, slower) == pytest.approx(-0.5 * np.log(2.0))
    assert scoreboard_reward(before, broken) < -0.5
    assert scoreboard_reward(before, crashed) < scoreboard_reward(before, broken)
    f = scoreboard_features(before, crashed)
    assert f.shape == (len(FEATURE_NAMES),)
    assert f[FEATURE_NAMES.index("newly_broken")] == 0.5
    assert f[FEATURE_NAMES.index("hard_failure")] == 0.5


def test_validation():
    with pytest.raises(ValueError, match="non-empty"):
        scoreboard_features([], [ModuleResult("a", "passed", 1)])
    with pytest.raises(TypeError, match="ModuleResult rows, got dict"):
        scoreboard_features([{"module": "a"}], [ModuleResult("a", "passed", 1)])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="alpha must be in"):
        RefactorAgent(alpha=0.0)
    with pytest.raises(ValueError, match="epsilon must be in"):
        RefactorAgent(epsilon=1.5)
    with pytest.raises(ValueError, match="distinct"):
        RefactorAgent(actions=("a", "a"))
    with pytest.raises(ValueError, match=r"features must have shape \(8,\)"):
        scoreboard_state(np.zeros(3))
    env = SimulatedRefactorEnv()
    with pytest.raises(RuntimeError, match="reset"):
        env.step("replace")
