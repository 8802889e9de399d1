"""Numerical stability monitor (seed 003): detect NaN/Inf/gradient spikes, recover, or stop.

Detection:
    * :meth:`NumericalStabilityMonitor.check_tensors`: NaN/Inf in given tensors (e.g. the loss);
    * :meth:`NumericalStabilityMonitor.check_gradients`: NaN/Inf gradients (naming the
      parameters), a global gradient norm above ``grad_norm_threshold``, or a spike above
      ``spike_factor`` times the running average of recent stable norms.

Recovery (:meth:`NumericalStabilityMonitor.recover`) runs strategies in order, each with a
budget: reduce the learning rate (``max_lr_reductions`` times), roll back to the last stable
snapshot (``max_rollbacks`` times), then the strategies the model registered with
:meth:`NumericalStabilityMonitor.register_strategy`, until one applies. When none can, it
raises RuntimeError. After ``patience`` consecutive stable steps the budgets are renewed.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from seedbed.core_layers._checks import check_positive_int

__all__ = ["NumericalStabilityMonitor"]

log = logging.getLogger(__name__)


class NumericalStabilityMonitor:
    """Watches a model's numbers during training and recovers from instabilities.

    Args:
        model: the module being trained (not a DDP wrapper: pass ``ddp.module``).
        optimizer: its optimizer; needed for LR reduction and for roll-back of optimizer state.
        grad_norm_threshold: a global gradient norm above this is an instability.
        spike_factor: a norm above ``spike_factor`` x the running mean of stable norms is a
            spike (checked after ``spike_warmup`` stable steps); None disables the check.
        spike_warmup: stable steps before spike detection starts.
        ema_beta: decay of the running mean of stable gradient norms.
        lr_factor: multiplier applied to the learning rate by each reduction.
        max_lr_reductions: budget of LR reductions.
        max_rollbacks: budget of roll-backs to the last snapshot.
        patience: consecutive stable steps after which the budgets are renewed.

    Attributes:
        lr_scale: product of the LR reductions so far (a trainer multiplies its schedule by it).
        nan_count, inf_count, large_grad_count, spike_count: detections so far.
        events: list of ``{"strategy": name, "issues": [...]}`` for each recovery applied.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        grad_norm_threshold: float = 1000.0,
        spike_factor: float | None = 10.0,
        spike_warmup: int = 10,
        ema_beta: float = 0.9,
        lr_factor: float = 0.5,
        max_lr_reductions: int = 2,
        max_rollbacks: int = 1,
        patience: int = 50,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        if not grad_norm_threshold > 0:
            raise ValueError(f"grad_norm_threshold must be > 0, got {grad_norm_threshold}")
        if spike_factor is not None and not spike_factor > 1:
            raise ValueError(f"spike_factor must be > 1 or None, got {spike_factor}")
        if not 0 < lr_factor < 1:
            raise ValueError(f"lr_factor must be in (0, 1), got {lr_factor}")
        if not 0 <= ema_beta < 1:
            raise ValueError(f"ema_beta must be in [0, 1), got {ema_beta}")
        check_positive_int(max_lr_reductions, "max_lr_reductions", allow_zero=True)
        check_positive_int(max_rollbacks, "max_rollbacks", allow_zero=True)
        check_positive_int(patience, "patience")
        check_positive_int(spike_warmup, "spike_warmup", allow_zero=True)
        self.model = model
        self.optimizer = optimizer
        self.grad_norm_threshold = float(grad_norm_threshold)
        self.spike_factor = spike_factor
        self.spike_warmup = spike_warmup
        self.ema_beta = ema_beta
        self.lr_factor = lr_factor
        self.max_lr_reductions = max_lr_reductions
        self.max_rollbacks = max_rollbacks
        self.patience = patience

        self.nan_count = 0
        self.inf_count = 0
        self.large_grad_count = 0
        self.spike_count = 0
        self.lr_scale = 1.0
        self.last_grad_norm: float | None = None
        self.last_issues: list[str] = []
        self.events: list[dict[str, Any]] = []
        self._grad_norm_ema: float | None = None
        self._stable_steps = 0  # stable steps seen in total (spike warm-up)
        self._stable_run = 0  # consecutive stable steps (budget renewal)
        self._lr_reductions = 0
        self._rollbacks = 0
        self._strategy = 0
        self._snapshot: dict[str, Any] | None = None
        self._custom: list[tuple[str, Callable[[], bool]]] = []

    # ------------------------------------------------------------------ detection
    def check_tensors(
        self, tensors: Sequence[torch.Tensor], names: Sequence[str]
    ) -> tuple[bool, list[str]]:
        """Check ``tensors`` for NaN and Inf.

        Returns:
            ``(is_stable, issues)`` with one message per problem found.
        """
        if len(tensors) != len(names):
            raise ValueError(
                f"need one name per tensor, got {len(tensors)} tensors and {len(names)} names"
            )
        issues = []
        for t, name in zip(tensors, names):
            if torch.isnan(t).any():
                issues.append(f"NaN detected in {name}")
                self.nan_count += 1
            if torch.isinf(t).any():
                issues.append(f"Inf detected in {name}")
                self.inf_count += 1
        self.last_issues = issues
        return not issues, issues

    def check_gradients(
        self, grad_norm: float | torch.Tensor | None = None
    ) -> tuple[bool, list[str]]:
        """Check the model's gradients: NaN/Inf, norm above threshold, norm spike.

        Args:
            grad_norm: the global L2 norm of the gradients if already computed (e.g. returned
                by ``clip_grad_norm_``); computed here otherwise.

        Returns:
            ``(is_stable, issues)``.
        """
        grads = [(n, p.grad) for n, p in self.model.named_parameters() if p.grad is not None]
        if grad_norm is None:
            norms = [g.detach().float().norm() for _, g in grads]
            grad_norm = torch.stack(norms).norm() if norms else torch.zeros(())
        norm = float(grad_norm)
        self.last_grad_norm = norm
        issues = []
        if not math.isfinite(norm):
            for name, g in grads:
                if torch.isnan(g).any():
                    issues.append(f"NaN gradient in {name}")
                    self.nan_count += 1
                if torch.isinf(g).any():
                    issues.append(f"Inf gradient in {name}")
                    self.inf_count += 1
            if not issues:
                issues.append(f"non-finite gradient norm {norm}")
                self.inf_count += 1
        elif norm > self.grad_norm_threshold:
            issues.append(
                f"gradient norm {norm:.4g} exceeds threshold {self.grad_norm_threshold:.4g}"
            )
            self.large_grad_count += 1
        elif (
            self.spike_factor is not None
            and self._grad_norm_ema is not None
            and self._stable_steps >= self.spike_warmup
            and norm > self.spike_factor * self._grad_norm_ema
        ):
            issues.append(
                f"gradient norm spike {norm:.4g} > {self.spike_factor} x running mean {self._grad_norm_ema:.4g}"
            )
            self.spike_count += 1
        self.last_issues = issues
        return not issues, issues

    def record_stable(self, grad_norm: float | None = None) -> None:
        """Tell the monitor a step went through; updates the running norm and renews budgets
        after ``patience`` consecutive stable steps."""
        norm = self.last_grad_norm if grad_norm is None else float(grad_norm)
        if norm is not None and math.isfinite(norm):
            ema = self._grad_norm_ema
            self._grad_norm_ema = (
                norm if ema is None else self.ema_beta * ema + (1 - self.ema_beta) * norm
            )
        self._stable_steps += 1
        self._stable_run += 1
        if self._stable_run >= self.patience and (
            self._strategy or self._lr_reductions or self._rollbacks
        ):
            self._strategy = self._lr_reductions = self._rollbacks = 0

    # ------------------------------------------------------------------ recovery
    def snapshot(self) -> None:
        """Remember the current model (and optimizer) state as the last stable one (a CPU copy)."""
        self._snapshot = {
            "model": {
                k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()
            },
            "optimizer": copy.deepcopy(self.optimizer.state_dict())
            if self.optimizer is not None
            else None,
        }

    @property
    def has_snapshot(self) -> bool:
        return self._snapshot is not None

    def register_strategy(self, fn: Callable[[], bool], name: str | None = None) -> None:
        """Add a model-specific recovery strategy, tried after the built-in ones.

        ``fn()`` applies its change and returns True, or returns False when it cannot help
        (any more); it is then skipped until the budgets are renewed.
        """
        if not callable(fn):
            raise TypeError(f"strategy must be callable, got {type(fn).__name__}")
        label = (
            name
            if name is not None
            else str(getattr(fn, "__name__", f"strategy_{len(self._custom)}"))
        )
        self._custom.append((label, fn))

    def _strategies(self) -> list[tuple[str, Callable[[], bool]]]:
        return [
            ("reduce_lr", self._reduce_learning_rate),
            ("rollback", self._rollback),
            *self._custom,
        ]

    def recover(self, issues: Sequence[str] | None = None) -> str:
        """Apply the next recovery strategy that can act.

        Args:
            issues: what went wrong (for the log and the error message); default: the issues
                found by the latest check.

        Returns:
            The name of the strategy applied.

        Raises:
            RuntimeError: when every strategy is exhausted; the message lists the issues.
        """
        self._stable_run = 0
        if issues is not None:
            self.last_issues = list(issues)
        strategies = self._strategies()
        while self._strategy < len(strategies):
            name, fn = strategies[self._strategy]
            if fn():
                self.events.append({"strategy": name, "issues": list(self.last_issues)})
                log.warning(
                    "numerical instability (%s): applied recovery %r",
                    "; ".join(self.last_issues),
                    name,
                )
                return name
            self._strategy += 1
        tried = ", ".join(n for n, _ in strategies)
        raise RuntimeError(
            f"NumericalStabilityMonitor: all recovery strategies exhausted ({tried}) after "
            f"{len(self.events)} recoveries; last issues: {'; '.join(self.last_issues) or 'none recorded'}. "
            "Training failed."
        )

    def _reduce_learning_rate(self) -> bool:
        if self._lr_reductions >= self.max_lr_reductions:
            return False
        self._lr_reductions += 1
        self.lr_scale *= self.lr_factor
        if self.optimizer is not None:
            for group in self.optimizer.param_groups:
                group["lr"] *= self.lr_factor
        return True

    def _rollback(self) -> bool:
        if self._snapshot is None or self._rollbacks >= self.max_rollbacks:
            return False
        self._rollbacks += 1
        self.model.load_state_dict(self._snapshot["model"])
        if self.optimizer is not None and self._snapshot["optimizer"] is not None:
            lrs = [g["lr"] for g in self.optimizer.param_groups]  # keep the reduced LRs
            self.optimizer.load_state_dict(copy.deepcopy(self._snapshot["optimizer"]))
            for g, lr in zip(self.optimizer.param_groups, lrs):
                g["lr"] = lr
        return True

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        """Counters, budgets and running statistics (not the snapshot) as plain data."""
        return {
            "nan_count": self.nan_count,
            "inf_count": self.inf_count,
            "large_grad_count": self.large_grad_count,
            "spike_count": self.spike_count,
            "lr_scale": self.lr_scale,
            "grad_norm_ema": self._grad_norm_ema,
            "stable_steps": self._stable_steps,
            "stable_run": self._stable_run,
            "lr_reductions": self._lr_reductions,
            "rollbacks": self._rollbacks,
            "strategy": self._strategy,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.nan_count = int(state["nan_count"])
        self.inf_count = int(state["inf_count"])
        self.large_grad_count = int(state["large_grad_count"])
        self.spike_count = int(state["spike_count"])
        self.lr_scale = float(state["lr_scale"])
        self._grad_norm_ema = state["grad_norm_ema"]
        self._stable_steps = int(state["stable_steps"])
        self._stable_run = int(state["stable_run"])
        self._lr_reductions = int(state["lr_reductions"])
        self._rollbacks = int(state["rollbacks"])
        self._strategy = int(state["strategy"])
