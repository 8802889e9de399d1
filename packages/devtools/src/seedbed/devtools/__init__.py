"""Seedbed developer tools: the eval harness and research-engineering utilities.

Submodules are imported lazily, so that ``python -m seedbed.devtools.<tool>`` runs each tool
as ``__main__`` without a second copy of it already in ``sys.modules``.
"""

from __future__ import annotations

import importlib
from importlib.metadata import version as _version
from typing import Any

__version__ = _version("seedbed-devtools")

# public name -> submodule that defines it
_EXPORTS = {
    "BenchmarkSpec": "eval_harness",
    "discover_benchmarks": "eval_harness",
    "run_benchmarks": "eval_harness",
    "keep_freed_memory": "malloc",
    # A-1 paper-to-code
    "TranspileError": "paper_to_code",
    "transpile": "paper_to_code",
    # A-2 AutoBench
    "ModuleResult": "autobench",
    "discover_modules": "autobench",
    "merge_junit": "autobench",
    "run_autobench": "autobench",
    "run_module": "autobench",
    "summarize_results": "autobench",
    # A-3 meta-RL refactor agent
    "LinearRefactorAgent": "meta_rl_refactor",
    "RefactorAgent": "meta_rl_refactor",
    "SimulatedRefactorEnv": "meta_rl_refactor",
    "scoreboard_features": "meta_rl_refactor",
    "scoreboard_reward": "meta_rl_refactor",
    "scoreboard_state": "meta_rl_refactor",
    # A-4 amplitude-estimation search
    "AmplitudeEstimate": "quantum_hpo",
    "QAEHyperparamSearch": "quantum_hpo",
    "amplitude_estimate": "quantum_hpo",
    "amplitude_estimate_bayesian": "quantum_hpo",
    "monte_carlo_estimate": "quantum_hpo",
    # pull-request monitor
    "GitHubAuthError": "pull_request_monitor",
    "GitHubClient": "pull_request_monitor",
    "GitHubError": "pull_request_monitor",
    "check_mergeable": "pull_request_monitor",
    "list_open_prs": "pull_request_monitor",
    # A-9 PR conflict checks
    "MergeCheck": "pr_conflict_checker",
    "check_branches": "pr_conflict_checker",
    "check_merge": "pr_conflict_checker",
    "check_prs": "pr_conflict_checker",
    # S-3 scaling laws
    "BNSLFit": "scaling_law",
    "BreakpointScalingLaw": "scaling_law",
    "ChinchillaFit": "scaling_law",
    "fit_bnsl": "scaling_law",
    "fit_chinchilla": "scaling_law",
    "BreakpointModel": "scaling_breakpoint",
    "fit_breakpoint": "scaling_breakpoint",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"seedbed.devtools.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'seedbed.devtools' has no attribute {name!r}")
