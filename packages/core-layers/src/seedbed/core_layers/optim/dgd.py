"""Delta Gradient Descent (DGD), from Behrouz et al., "Nested Learning: The Illusion of Deep
Learning Architectures" (NeurIPS 2025; arXiv:2512.24695).

Plain gradient descent on a linear map y = W x is one step on the dot-product objective
⟨W x_t, ∇_y L⟩ (Eq. 25–26), which treats samples as independent. DGD instead takes the step on
an L2 (delta-rule) regression objective (Eq. 27), which adds an input-dependent decay:

    W_{t+1} = W_t (I − x_t x_tᵀ) − η ∇_{W_t} L(W_t; x_t)                     (Eq. 28–29)

and, solved exactly with Sherman–Morrison (arXiv version, Eq. 56–57),

    W_{t+1} = W_t (I − η' x_t x_tᵀ) − η' ∇_{y_t} L(W_t; x_t) ⊗ x_t,   η' = η / (1 + η ‖x_t‖²).

This optimizer implements the exact (proximal) step of

    W_{t+1} = argmin_W ⟨∇_W L, W⟩ + (λ/2)·mean_i ‖W x_i‖² + (1/2η)‖W − W_t‖²_F
            = (W_t − η ∇_W L) (I + η λ C)⁻¹,      C = mean_i x_i x_iᵀ  (inputs of this step),

which for a single input is exactly Eq. 57 with η' = η / (1 + η λ ‖x‖²) and decay λ (λ = 1 as in
the paper; λ = 0 is plain SGD). The inputs x_i are collected by forward hooks that
:meth:`DeltaGradientDescent.attach` puts on the ``nn.Linear`` layers whose weights it optimizes.
Other parameters (biases, embeddings, layers without recorded inputs) get the plain SGD step.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.utils.hooks import RemovableHandle

__all__ = ["DeltaGradientDescent"]


class DeltaGradientDescent(Optimizer):
    """Delta Gradient Descent (Nested Learning, Eq. 27–29 / 56–57).

    Args:
        params: parameters or parameter groups.
        lr: learning rate η (>= 0).
        decay: λ >= 0, weight of the input-dependent decay term; 0 gives exactly SGD.
        weight_decay: L2 penalty added to the gradient (>= 0).

    Usage::

        opt = DeltaGradientDescent(model.parameters(), lr=0.05, decay=1.0)
        opt.attach(model)          # records the inputs of model's nn.Linear layers
        loss = loss_fn(model(x), y); loss.backward(); opt.step(); opt.zero_grad()
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        decay: float = 1.0,
        weight_decay: float = 0.0,
    ) -> None:
        if not lr >= 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not decay >= 0.0:
            raise ValueError(f"Invalid decay (must be >= 0): {decay}")
        if not weight_decay >= 0.0:
            raise ValueError(f"Invalid weight_decay: {weight_decay}")
        super().__init__(params, dict(lr=lr, decay=decay, weight_decay=weight_decay))
        self._inputs: dict[int, tuple[torch.Tensor, int]] = {}  # id(weight) -> (Σ x xᵀ, count)
        self._warned_untracked = False

    def attach(self, model: nn.Module) -> list[RemovableHandle]:
        """Hook every ``nn.Linear`` of ``model`` whose weight this optimizer updates.

        The hook records the layer input on forward passes run with grad enabled.

        Returns:
            The hook handles (``handle.remove()`` detaches).
        """
        mine = {id(p) for g in self.param_groups for p in g["params"]}
        handles = []
        for mod in model.modules():
            if isinstance(mod, nn.Linear) and id(mod.weight) in mine:
                handles.append(mod.register_forward_pre_hook(self._make_hook(mod.weight)))
        if not handles:
            raise ValueError("attach(): model has no nn.Linear whose weight this optimizer updates")
        return handles

    def _make_hook(self, weight: torch.Tensor) -> Callable[[nn.Module, tuple[Any, ...]], None]:
        def hook(_mod: nn.Module, args: tuple[Any, ...]) -> None:
            if torch.is_grad_enabled() and args and isinstance(args[0], torch.Tensor):
                self.record_inputs(weight, args[0])

        return hook

    @torch.no_grad()
    def record_inputs(self, weight: torch.Tensor, x: torch.Tensor) -> None:
        """Accumulate inputs x (..., in) of the linear map with weight (out, in) for the next step."""
        if weight.dim() != 2 or x.shape[-1] != weight.shape[1]:
            raise ValueError(
                f"inputs must end with in_features={weight.shape[-1]}, got x {tuple(x.shape)} "
                f"for weight {tuple(weight.shape)}"
            )
        work = torch.promote_types(x.dtype, torch.float32)
        x2 = x.detach().reshape(-1, x.shape[-1]).to(work)  # (N, in)
        cov = x2.mT @ x2  # (in, in)
        prev = self._inputs.get(id(weight))
        self._inputs[id(weight)] = (
            (cov, x2.shape[0]) if prev is None else (prev[0] + cov, prev[1] + x2.shape[0])
        )

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One DGD step; the recorded inputs are consumed."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        any_decay = any(g["decay"] > 0 for g in self.param_groups)
        if any_decay and not self._inputs:
            raise RuntimeError(
                "DeltaGradientDescent with decay > 0 has no recorded inputs: call attach(model) "
                "(or record_inputs) before the forward pass"
            )
        untracked = []
        for group in self.param_groups:
            lr, lam, wd = group["lr"], group["decay"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if grad.is_sparse:
                    raise RuntimeError("DeltaGradientDescent does not support sparse gradients")
                if wd != 0:
                    grad = grad.add(p, alpha=wd)
                rec = self._inputs.get(id(p))
                if lam > 0 and rec is not None:
                    cov, count = rec
                    c = cov / count  # (in, in) mean x xᵀ
                    work = torch.promote_types(c.dtype, p.dtype)
                    c = c.to(work)
                    a = torch.eye(c.shape[0], dtype=work, device=c.device) + (lr * lam) * c
                    target = (p.to(work) - lr * grad.to(work)).mT  # (in, out)
                    # W_{t+1} = (W_t − η g) A⁻¹, A = I + ηλC symmetric positive definite
                    new = torch.linalg.solve(a, target).mT  # (out, in)
                    p.copy_(new.to(p.dtype))
                else:
                    if lam > 0 and p.dim() == 2:
                        untracked.append(tuple(p.shape))
                    p.add_(grad, alpha=-lr)
        if untracked and not self._warned_untracked:
            warnings.warn(
                f"DeltaGradientDescent: no recorded inputs for 2-D parameters {untracked}; "
                "they got a plain SGD step",
                stacklevel=2,
            )
            self._warned_untracked = True
        self._inputs.clear()
        return loss
