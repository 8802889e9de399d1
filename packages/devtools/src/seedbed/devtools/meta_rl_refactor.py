"""Meta-RL refactor agent (A-3): Q-learning over AutoBench scoreboard deltas.

After a change to a module, AutoBench gives a scoreboard before and after. The agent chooses
what to do with the change:

- ``replace``: keep the new implementation (it replaces the old one);
- ``refactor``: keep it but send it back for another pass (e.g. it got slower);
- ``rollback``: revert to the old implementation.

The observation is a feature vector of the scoreboard deltas (:func:`scoreboard_features`);
:class:`RefactorAgent` discretises it into a table key (:func:`scoreboard_state`) and learns a
Q-table, :class:`LinearRefactorAgent` learns a linear Q-function of the features. Both have
epsilon-greedy :meth:`select_action`, a TD(0) :meth:`update`, and JSON :meth:`save`/``load``.
:func:`scoreboard_reward` turns a pair of scoreboards into a reward.
:class:`SimulatedRefactorEnv` produces scoreboards whose best action is known, for training
and testing.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seedbed.devtools.autobench import ModuleResult

__all__ = [
    "ACTIONS",
    "FEATURE_NAMES",
    "LinearRefactorAgent",
    "RefactorAgent",
    "SimulatedRefactorEnv",
    "scoreboard_features",
    "scoreboard_reward",
    "scoreboard_state",
]

ACTIONS: tuple[str, ...] = ("replace", "refactor", "rollback")
FEATURE_NAMES: tuple[str, ...] = (
    "bias",  # constant 1
    "pass_gain",  # max(0, pass rate after - before)
    "pass_loss",  # max(0, pass rate before - after)
    "d_fail_frac",  # (failed + errors) after - before, over the tests before (clipped to +-1)
    "slower",  # max(0, log(total time after / before))
    "faster",  # max(0, -log(total time after / before))
    "newly_broken",  # fraction of modules ok before and not ok after
    "hard_failure",  # fraction of modules crashed or timed out after
)
_HARD = ("crashed", "timeout")


def _totals(board: Sequence[ModuleResult]) -> tuple[int, int, float]:
    ran = sum(r.passed + r.failed + r.errors for r in board)
    bad = sum(r.failed + r.errors for r in board)
    return ran, bad, sum(r.seconds for r in board)


def _check_boards(before: Sequence[ModuleResult], after: Sequence[ModuleResult]) -> None:
    if not before or not after:
        raise ValueError(
            f"scoreboards must be non-empty, got {len(before)} and {len(after)} modules"
        )
    for board in (before, after):
        for r in board:
            if not isinstance(r, ModuleResult):
                raise TypeError(f"scoreboards hold ModuleResult rows, got {type(r).__name__}")


def scoreboard_features(
    before: Sequence[ModuleResult], after: Sequence[ModuleResult]
) -> np.ndarray:
    """Features of the change from scoreboard ``before`` to ``after`` (see FEATURE_NAMES).

    Returns:
        ``(F,)`` float64 array, ``F = len(FEATURE_NAMES)``.
    """
    _check_boards(before, after)
    ran0, bad0, t0 = _totals(before)
    ran1, bad1, t1 = _totals(after)
    rate0 = (ran0 - bad0) / ran0 if ran0 else 1.0
    rate1 = (ran1 - bad1) / ran1 if ran1 else 1.0
    d_fail = float(np.clip((bad1 - bad0) / max(ran0, 1), -1.0, 1.0))
    log_time = math.log(max(t1, 1e-9) / max(t0, 1e-9))
    ok0 = {r.module for r in before if r.ok}
    names = {r.module for r in after}
    newly = sum(1 for r in after if not r.ok and r.module in ok0) / max(len(names), 1)
    hard = sum(1 for r in after if r.status in _HARD) / max(len(names), 1)
    d_rate = rate1 - rate0
    return np.array(
        [
            1.0,
            max(d_rate, 0.0),
            max(-d_rate, 0.0),
            d_fail,
            max(log_time, 0.0),
            max(-log_time, 0.0),
            newly,
            hard,
        ]
    )


def scoreboard_state(
    features: np.ndarray, *, rate_eps: float = 1e-9, time_tol: float = 0.1
) -> tuple[int, int, int, int]:
    """Discretise scoreboard features into a table key.

    Returns:
        ``(pass-rate sign, time sign, any newly broken, any hard failure)``: the signs are
        -1/0/+1, with time changes within ``time_tol`` (relative) counted as 0.
    """
    f = np.asarray(features, dtype=np.float64)
    if f.shape != (len(FEATURE_NAMES),):
        raise ValueError(f"features must have shape ({len(FEATURE_NAMES)},), got {f.shape}")
    gain, loss, slower, faster, newly, hard = f[1], f[2], f[4], f[5], f[6], f[7]
    rate = -1 if loss > rate_eps else (1 if gain > rate_eps else 0)
    tol = math.log1p(time_tol)
    tsign = 1 if slower > tol else (-1 if faster > tol else 0)
    return (rate, tsign, int(newly > 0), int(hard > 0))


def scoreboard_reward(
    before: Sequence[ModuleResult],
    after: Sequence[ModuleResult],
    *,
    time_weight: float = 0.5,
    break_penalty: float = 1.0,
) -> float:
    """Reward for moving from scoreboard ``before`` to ``after``.

    ``reward = d_pass_rate - time_weight * log(time ratio) - break_penalty * (newly broken +
    hard failures)``: more passing tests is good, slower is bad, breaking a module that
    passed (worse still, crashing or hanging it) is bad.
    """
    if time_weight < 0 or break_penalty < 0:
        raise ValueError(
            f"time_weight and break_penalty must be >= 0, got {time_weight} and {break_penalty}"
        )
    f = scoreboard_features(before, after)
    d_rate, log_time = f[1] - f[2], f[4] - f[5]
    return float(d_rate - time_weight * log_time - break_penalty * (f[6] + f[7]))


class _AgentBase:
    """Shared epsilon-greedy machinery and hyper-parameter checks."""

    def __init__(
        self,
        actions: Sequence[str],
        alpha: float,
        gamma: float,
        epsilon: float,
        seed: int | None,
    ) -> None:
        if len(actions) < 2 or len(set(actions)) != len(actions):
            raise ValueError(f"actions must be >= 2 distinct names, got {list(actions)}")
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        if not 0 <= gamma <= 1:
            raise ValueError(f"gamma must be in [0, 1], got {gamma}")
        if not 0 <= epsilon <= 1:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        self.actions = tuple(actions)
        self.alpha = alpha
        self.gamma = gamma
        self.epsilon = epsilon
        self.rng = np.random.default_rng(seed)

    def _index(self, action: str) -> int:
        try:
            return self.actions.index(action)
        except ValueError:
            raise ValueError(f"action must be one of {self.actions}, got {action!r}") from None

    def _pick(self, q: np.ndarray, greedy: bool) -> str:
        if not greedy and self.rng.random() < self.epsilon:
            return self.actions[int(self.rng.integers(len(self.actions)))]
        best = np.flatnonzero(q == q.max())  # break ties at random, not by position
        return self.actions[int(best[0] if greedy else self.rng.choice(best))]


class RefactorAgent(_AgentBase):
    """Tabular Q-learning agent; states are hashable keys such as :func:`scoreboard_state`."""

    def __init__(
        self,
        actions: Sequence[str] = ACTIONS,
        *,
        alpha: float = 0.1,  # learning rate of the TD update
        gamma: float = 0.9,  # discount of the next state's value
        epsilon: float = 0.1,  # exploration rate of select_action()
        seed: int | None = None,
    ) -> None:
        super().__init__(actions, alpha, gamma, epsilon, seed)
        self.q: dict[Hashable, np.ndarray] = {}

    def q_values(self, state: Hashable) -> np.ndarray:
        """``(A,)`` action values of ``state`` (zeros for a state never seen)."""
        return self.q.get(state, np.zeros(len(self.actions)))

    def select_action(self, state: Hashable, *, greedy: bool = False) -> str:
        """Epsilon-greedy action (``greedy=True``: the best action, ties to the first)."""
        return self._pick(self.q_values(state), greedy)

    def update(
        self,
        state: Hashable,
        action: str,
        reward: float,
        next_state: Hashable | None = None,
        done: bool = True,
    ) -> float:
        """TD(0) update ``Q(s,a) += alpha * (r + gamma * max Q(s') - Q(s,a))``.

        Returns:
            The TD error before the update.
        """
        a = self._index(action)
        if not math.isfinite(reward):
            raise ValueError(f"reward must be finite, got {reward}")
        if not done and next_state is None:
            raise ValueError("next_state is required when done=False")
        target = reward
        if not done:
            target += self.gamma * float(self.q_values(next_state).max())
        row = self.q.setdefault(state, np.zeros(len(self.actions)))
        td = target - row[a]
        row[a] += self.alpha * td
        return float(td)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the Q-table and hyper-parameters as JSON (state keys as JSON lists)."""
        data = {
            "kind": "tabular",
            "actions": list(self.actions),
            "alpha": self.alpha,
            "gamma": self.gamma,
            "epsilon": self.epsilon,
            "q": [[_to_json_key(s), v.tolist()] for s, v in self.q.items()],
        }
        Path(path).write_text(json.dumps(data, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, seed: int | None = None) -> RefactorAgent:
        """Read an agent written by :meth:`save`."""
        data = _read(path, "tabular")
        agent = cls(
            data["actions"],
            alpha=data["alpha"],
            gamma=data["gamma"],
            epsilon=data["epsilon"],
            seed=seed,
        )
        for key, values in data["q"]:
            v = np.asarray(values, dtype=np.float64)
            if v.shape != (len(agent.actions),):
                raise ValueError(
                    f"{path}: Q row for {key} has {v.size} values, expected {len(agent.actions)}"
                )
            agent.q[_from_json_key(key)] = v
        return agent


class LinearRefactorAgent(_AgentBase):
    """Q-learning with a linear Q-function ``Q(s, a) = w[a] . phi(s)`` over feature vectors."""

    def __init__(
        self,
        n_features: int = len(FEATURE_NAMES),
        actions: Sequence[str] = ACTIONS,
        *,
        alpha: float = 0.05,  # step size of the semi-gradient TD update
        gamma: float = 0.9,
        epsilon: float = 0.1,
        seed: int | None = None,
    ) -> None:
        super().__init__(actions, alpha, gamma, epsilon, seed)
        if n_features < 1:
            raise ValueError(f"n_features must be >= 1, got {n_features}")
        self.w = np.zeros((len(self.actions), n_features))  # (A, F)

    def _phi(self, features: np.ndarray) -> np.ndarray:
        f = np.asarray(features, dtype=np.float64)
        if f.shape != (self.w.shape[1],):
            raise ValueError(f"features must have shape ({self.w.shape[1]},), got {f.shape}")
        if not np.all(np.isfinite(f)):
            raise ValueError("features must be finite")
        return f

    def q_values(self, features: np.ndarray) -> np.ndarray:
        """``(A,)`` action values for a feature vector ``(F,)``."""
        return self.w @ self._phi(features)

    def select_action(self, features: np.ndarray, *, greedy: bool = False) -> str:
        return self._pick(self.q_values(features), greedy)

    def update(
        self,
        features: np.ndarray,
        action: str,
        reward: float,
        next_features: np.ndarray | None = None,
        done: bool = True,
    ) -> float:
        """Semi-gradient TD(0): ``w[a] += alpha * (r + gamma max_a' Q(s',a') - Q(s,a)) phi(s)``."""
        a = self._index(action)
        phi = self._phi(features)
        if not math.isfinite(reward):
            raise ValueError(f"reward must be finite, got {reward}")
        if not done and next_features is None:
            raise ValueError("next_features is required when done=False")
        target = reward
        if not done:
            target += self.gamma * float(self.q_values(next_features).max())  # type: ignore[arg-type]
        td = target - float(self.w[a] @ phi)
        self.w[a] += self.alpha * td * phi
        return td

    def save(self, path: str | os.PathLike[str]) -> None:
        data = {
            "kind": "linear",
            "actions": list(self.actions),
            "alpha": self.alpha,
            "gamma": self.gamma,
            "epsilon": self.epsilon,
            "w": self.w.tolist(),
        }
        Path(path).write_text(json.dumps(data, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, seed: int | None = None) -> LinearRefactorAgent:
        data = _read(path, "linear")
        w = np.asarray(data["w"], dtype=np.float64)
        if w.ndim != 2 or w.shape[0] != len(data["actions"]):
            raise ValueError(f"{path}: weights of shape {w.shape} do not match the actions")
        agent = cls(
            w.shape[1],
            data["actions"],
            alpha=data["alpha"],
            gamma=data["gamma"],
            epsilon=data["epsilon"],
            seed=seed,
        )
        agent.w = w
        return agent


def _to_json_key(state: Hashable) -> Any:
    if isinstance(state, tuple):
        return [_to_json_key(s) for s in state]
    if isinstance(state, (str, int, float, bool)) or state is None:
        return state
    if isinstance(state, np.integer):
        return int(state)
    raise TypeError(f"cannot save a state of type {type(state).__name__} as JSON")


def _from_json_key(key: Any) -> Hashable:
    if isinstance(key, list):
        return tuple(_from_json_key(k) for k in key)
    return key  # type: ignore[no-any-return]


def _read(path: str | os.PathLike[str], kind: str) -> dict[str, Any]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("kind") != kind:
        got = data.get("kind") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path}: expected a saved {kind} agent, got kind {got!r}")
    return data


# --------------------------------------------------------------------------------------------
# Simulated environment
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Situation:
    rate: int  # -1 tests regressed, 0 same, +1 more tests pass
    time: int  # -1 faster, 0 same, +1 slower
    broken: int  # a module that passed now fails
    hard: int  # ... and it crashed or hung


class SimulatedRefactorEnv:
    """A codebase stand-in that emits AutoBench scoreboards with a known best action.

    Each step draws a situation (tests regressed / unchanged / improved, slower / same /
    faster, a module newly broken, a crash or hang) and renders the scoreboards before and
    after a change. The best action is ``rollback`` when anything regressed, ``refactor``
    when the tests are no worse but the code got slower, and ``replace`` otherwise. Rewards
    are 1 for the best action and lower for the others, plus Gaussian noise.

    Args:
        n_modules: modules per scoreboard.
        noise: standard deviation of the reward noise.
        seed: random seed.
    """

    def __init__(self, n_modules: int = 4, *, noise: float = 0.3, seed: int | None = 0) -> None:
        if n_modules < 2:
            raise ValueError(f"n_modules must be >= 2, got {n_modules}")
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        self.n_modules = n_modules
        self.noise = noise
        self.rng = np.random.default_rng(seed)
        sits = [_Situation(r, t, 0, 0) for r in (-1, 0, 1) for t in (-1, 0, 1)]
        sits += [_Situation(-1, t, 1, h) for t in (-1, 0, 1) for h in (0, 1)]
        self.situations = sits
        # mean reward of each non-best action, fixed per situation
        self._means = {
            s: {
                a: (1.0 if a == self.best_for(s) else float(self.rng.uniform(-0.5, 0.4)))
                for a in ACTIONS
            }
            for s in sits
        }
        self._current: _Situation | None = None

    @staticmethod
    def best_for(s: _Situation) -> str:
        if s.rate < 0 or s.broken or s.hard:
            return "rollback"
        if s.time > 0:
            return "refactor"
        return "replace"

    def boards(self, s: _Situation) -> tuple[list[ModuleResult], list[ModuleResult]]:
        """Scoreboards before and after a change in situation ``s``."""
        rng = self.rng
        before, after = [], []
        for k in range(self.n_modules):
            name = f"test_mod{k}.py"
            n = int(rng.integers(8, 20))
            fail0 = 2 if (s.rate > 0 and k == 0) or (s.rate < 0 and not s.broken and k == 0) else 0
            t0 = float(rng.uniform(0.5, 2.0))
            before.append(
                ModuleResult(name, "failed" if fail0 else "passed", n - fail0, fail0, seconds=t0)
            )
            scale = {-1: 0.6, 0: 1.0, 1: 1.6}[s.time] * float(rng.uniform(0.97, 1.03))
            if k == 0 and s.rate > 0:
                after.append(ModuleResult(name, "passed", n, 0, seconds=t0 * scale))
            elif k == 0 and s.rate < 0 and not s.broken:
                after.append(ModuleResult(name, "failed", n - 4, 4, seconds=t0 * scale))
            elif k == 1 and s.broken and s.hard:
                after.append(ModuleResult(name, "crashed", 0, 0, 1, seconds=t0 * scale))
            elif k == 1 and s.broken:
                after.append(ModuleResult(name, "failed", n - 3, 3, seconds=t0 * scale))
            else:
                after.append(ModuleResult(name, "passed", n, 0, seconds=t0 * scale))
        return before, after

    def reset(self) -> tuple[list[ModuleResult], list[ModuleResult]]:
        """Start a step: draw a situation and return its (before, after) scoreboards."""
        self._current = self.situations[int(self.rng.integers(len(self.situations)))]
        return self.boards(self._current)

    def step(self, action: str) -> float:
        """The reward for ``action`` in the current situation."""
        if self._current is None:
            raise RuntimeError("call reset() before step()")
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}, got {action!r}")
        r = self._means[self._current][action] + self.noise * float(self.rng.standard_normal())
        self._current = None
        return r

    def best_action(self, before: Sequence[ModuleResult], after: Sequence[ModuleResult]) -> str:
        """The known best action for a pair of scoreboards (read back from their features)."""
        rate, tsign, broken, hard = scoreboard_state(scoreboard_features(before, after))
        return self.best_for(_Situation(rate, tsign, broken, hard))
