"""Gymnasium environments."""

from seedbed.agents_worldmodel.envs.gridworld import GridWorldEnv, value_iteration

__all__ = ["GridWorldEnv", "value_iteration"]
