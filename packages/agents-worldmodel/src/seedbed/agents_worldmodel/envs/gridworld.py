"""A slippery grid world with walls, as a gymnasium environment, and its exact solution.

The agent starts at the top-left cell and is rewarded 1 on reaching the bottom-right goal;
each step costs ``step_cost``. With probability ``slip`` the chosen move is replaced by a
uniformly random one. The transition model is exposed (``transition_matrix``) so that exact
value iteration gives the optimal policy for model-based tests.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

__all__ = ["GridWorldEnv", "value_iteration"]

_MOVES = np.array([[-1, 0], [0, 1], [1, 0], [0, -1]])  # up, right, down, left


class GridWorldEnv(gym.Env[np.int64, np.int64]):
    """Discrete grid world. Observation: cell index in [0, size*size). Actions: 0..3."""

    metadata = {"render_modes": ["ansi"]}  # noqa: RUF012  (gymnasium declares it per instance)

    def __init__(
        self,
        size: int = 5,
        slip: float = 0.1,
        step_cost: float = 0.01,
        walls: list[tuple[int, int]] | None = None,
        max_steps: int = 100,
        render_mode: str | None = None,
    ) -> None:
        if not isinstance(size, int) or size < 2:
            raise ValueError(f"size must be an int >= 2, got {size!r}")
        if not 0.0 <= slip <= 1.0:
            raise ValueError(f"slip must be in [0, 1], got {slip}")
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.size, self.slip, self.step_cost, self.max_steps = size, slip, step_cost, max_steps
        self.render_mode = render_mode
        self.walls = set(walls if walls is not None else [(1, 1), (2, 3), (3, 1)])
        for r, c in self.walls:
            if not (0 <= r < size and 0 <= c < size) or (r, c) in ((0, 0), (size - 1, size - 1)):
                raise ValueError(f"wall {(r, c)} is off the grid or on the start/goal cell")
        self.observation_space = spaces.Discrete(size * size)
        self.action_space = spaces.Discrete(4)
        self.goal = size * size - 1
        self._next = self._build_next()  # (S, 4) deterministic successor of each move
        self._pos = 0
        self._t = 0

    def _build_next(self) -> np.ndarray:
        n = self.size
        nxt = np.zeros((n * n, 4), dtype=np.int64)
        for s in range(n * n):
            r, c = divmod(s, n)
            for a, (dr, dc) in enumerate(_MOVES):
                rr, cc = r + dr, c + dc
                ok = 0 <= rr < n and 0 <= cc < n and (rr, cc) not in self.walls
                nxt[s, a] = rr * n + cc if ok else s
        return nxt

    def transition_matrix(self) -> np.ndarray:
        """P[s, a, s'] for non-terminal s: (S, 4, S). The goal is absorbing."""
        s_count = self.size * self.size
        p = np.zeros((s_count, 4, s_count))
        for a in range(4):
            for b in range(4):
                prob = (1 - self.slip) * (a == b) + self.slip / 4
                p[np.arange(s_count), a, self._next[:, b]] += prob
        p[self.goal] = 0.0
        p[self.goal, :, self.goal] = 1.0
        return p

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.int64, dict[str, Any]]:
        super().reset(seed=seed)
        self._pos, self._t = 0, 0
        return np.int64(self._pos), {}

    def step(self, action: np.int64) -> tuple[np.int64, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(action):
            raise ValueError(f"action must be an int in [0, 4), got {action!r}")
        a = int(action)
        if self.np_random.random() < self.slip:
            a = int(self.np_random.integers(4))
        self._pos = int(self._next[self._pos, a])
        self._t += 1
        terminated = self._pos == self.goal
        reward = (1.0 if terminated else 0.0) - self.step_cost
        truncated = self._t >= self.max_steps and not terminated
        return np.int64(self._pos), reward, terminated, truncated, {}

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        rows = []
        for r in range(self.size):
            row = ""
            for c in range(self.size):
                s = r * self.size + c
                row += (
                    "A"
                    if s == self._pos
                    else "#"
                    if (r, c) in self.walls
                    else "G"
                    if s == self.goal
                    else "."
                )
            rows.append(row)
        return "\n".join(rows)


def value_iteration(
    env: GridWorldEnv, gamma: float = 0.99, tol: float = 1e-10, max_iter: int = 10_000
) -> tuple[np.ndarray, np.ndarray]:
    """Exact optimal values and greedy policy of ``env``: ((S,), (S,) int actions)."""
    if not 0.0 < gamma < 1.0:
        raise ValueError(f"gamma must be in (0, 1), got {gamma}")
    p = env.transition_matrix()  # (S, A, S)
    reward = np.where(np.arange(p.shape[0]) == env.goal, 1.0, 0.0) - env.step_cost  # on arrival
    v = np.zeros(p.shape[0])
    for _ in range(max_iter):
        q = p @ (reward + gamma * np.where(np.arange(p.shape[0]) == env.goal, 0.0, v))  # (S, A)
        q[env.goal] = 0.0
        v_new = q.max(axis=1)
        if np.max(np.abs(v_new - v)) < tol:
            v = v_new
            break
        v = v_new
    return v, q.argmax(axis=1)
