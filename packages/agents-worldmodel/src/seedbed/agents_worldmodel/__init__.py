"""Seedbed agents and world models: environments, world models and model-based RL."""

from importlib.metadata import version as _version

from seedbed.agents_worldmodel.envs import GridWorldEnv, value_iteration

__version__ = _version("seedbed-agents-worldmodel")

__all__ = ["GridWorldEnv", "__version__", "value_iteration"]
