"""Multi-scale Momentum Muon (M3), Algorithm 1 of Behrouz et al., "Nested Learning: The
Illusion of Deep Learning Architectures" (arXiv:2512.24695, Sec. 7.2).

M3 applies the continuum-memory idea to the optimizer: a fast momentum updated every step and a
slow momentum updated once per chunk of f steps, both orthogonalized with Newton–Schulz as in
Muon, plus an Adam-style second moment:

    every f steps (chunk k):  M⁽²⁾ ← M⁽²⁾ ⊕ β₃ Σ_{i in chunk k−1} g_i,   O⁽²⁾ = NS_T(M⁽²⁾)
    every step t:             M⁽¹⁾ ← M⁽¹⁾ ⊕ β₁ g_t,                      O⁽¹⁾ = NS_T(M⁽¹⁾)
                              V    ← V ⊕ β₂ g_t²
                              Θ_t = Θ_{t−1} − η (O⁽¹⁾ + α O⁽²⁾) / sqrt(V + ε)

With ``accumulate="sum"`` the ⊕ updates are exactly the lines of Algorithm 1 (M ← M + β g).
Because NS_T starts by normalising its input, β₁ and β₃ then do not change O⁽¹⁾, O⁽²⁾. The
default ``accumulate="ema"`` reads the factors 1 > β as decay rates, as in Adam (the paper builds
M3 from Adam and Muon): M ← β M + (1 − β) g, V ← β₂ V + (1 − β₂) g², with V bias-corrected by
1 − β₂ᵗ. O⁽²⁾ is zero during the first chunk. NS_T is :func:`newton_schulz` (Muon's quintic
steps followed by cubic polishing steps); 1-D parameters are orthogonalized as columns
(i.e. normalised).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer

from seedbed.core_layers.optim.newton_schulz import newton_schulz

__all__ = ["M3Optimizer"]


class M3Optimizer(Optimizer):
    """Multi-scale Momentum Muon (Nested Learning, Algorithm 1).

    Args:
        params: parameters or parameter groups.
        lr: learning rate η (>= 0).
        betas: (β₁, β₂, β₃) for fast momentum, second moment, slow momentum, each in [0, 1).
        alpha: weight α >= 0 of the slow (chunk-level) momentum.
        eps: ε > 0 inside the square root.
        frequency: f >= 1, steps per chunk of the slow momentum.
        ns_steps: T >= 1 Newton–Schulz iterations (Muon's quintic coefficients).
        ns_polish_steps: extra cubic Newton–Schulz iterations (>= 0).
        weight_decay: L2 penalty added to the gradient (>= 0).
        accumulate: ``"ema"`` (default) or ``"sum"`` (Algorithm 1's lines as printed).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float, float] = (0.9, 0.999, 0.9),
        alpha: float = 0.5,
        eps: float = 1e-8,
        frequency: int = 10,
        ns_steps: int = 5,
        ns_polish_steps: int = 2,
        weight_decay: float = 0.0,
        accumulate: str = "ema",
    ) -> None:
        if not lr >= 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if len(betas) != 3:
            raise ValueError(f"betas must be (beta1, beta2, beta3), got {betas!r}")
        for i, b in enumerate(betas):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"Invalid beta[{i}]: {b}")
        if not alpha >= 0.0:
            raise ValueError(f"Invalid alpha (must be >= 0): {alpha}")
        if not eps > 0.0:
            raise ValueError(f"Invalid epsilon (must be > 0): {eps}")
        if isinstance(frequency, bool) or not isinstance(frequency, int) or frequency < 1:
            raise ValueError(f"Invalid frequency (must be an int >= 1): {frequency!r}")
        if isinstance(ns_steps, bool) or not isinstance(ns_steps, int) or ns_steps < 1:
            raise ValueError(f"Invalid ns_steps (must be an int >= 1): {ns_steps!r}")
        if not isinstance(ns_polish_steps, int) or ns_polish_steps < 0:
            raise ValueError(f"Invalid ns_polish_steps (must be an int >= 0): {ns_polish_steps!r}")
        if not weight_decay >= 0.0:
            raise ValueError(f"Invalid weight_decay: {weight_decay}")
        if accumulate not in ("ema", "sum"):
            raise ValueError(f"accumulate must be 'ema' or 'sum', got {accumulate!r}")
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            alpha=alpha,
            eps=eps,
            frequency=frequency,
            ns_steps=ns_steps,
            ns_polish_steps=ns_polish_steps,
            weight_decay=weight_decay,
            accumulate=accumulate,
        )
        super().__init__(params, defaults)

    @staticmethod
    def _ns(group: dict[str, Any], m: torch.Tensor) -> torch.Tensor:
        return newton_schulz(m, group["ns_steps"], polish_steps=group["ns_polish_steps"])

    def orthogonalized_momenta(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(O⁽¹⁾, O⁽²⁾) = NS_T of the current fast and slow momenta of parameter ``p``."""
        state = self.state.get(p)
        if not state:
            raise ValueError("parameter has no M3 state yet (call step() first)")
        group = next(g for g in self.param_groups if any(q is p for q in g["params"]))
        return self._ns(group, state["m1"]), state["o2"]

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One M3 step."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            b1, b2, b3 = group["betas"]
            ema = group["accumulate"] == "ema"
            f = group["frequency"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if grad.is_sparse:
                    raise RuntimeError("M3Optimizer does not support sparse gradients")
                if group["weight_decay"] != 0:
                    grad = grad.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = 0
                    state["m1"] = torch.zeros_like(p)  # fast momentum M⁽¹⁾
                    state["m2"] = torch.zeros_like(p)  # slow momentum M⁽²⁾
                    state["v"] = torch.zeros_like(p)  # second moment V
                    state["chunk_sum"] = torch.zeros_like(p)  # Σ g over the running chunk
                    state["o2"] = torch.zeros_like(p)  # NS(M⁽²⁾), refreshed once per chunk
                state["step"] += 1
                t = state["step"]
                if t > 1 and (t - 1) % f == 0:  # a new chunk starts: fold in the previous one
                    if ema:
                        state["m2"].mul_(b3).add_(state["chunk_sum"], alpha=1 - b3)
                    else:
                        state["m2"].add_(state["chunk_sum"], alpha=b3)
                    state["o2"] = self._ns(group, state["m2"])
                    state["chunk_sum"].zero_()
                state["chunk_sum"].add_(grad)
                if ema:
                    state["m1"].mul_(b1).add_(grad, alpha=1 - b1)
                    state["v"].mul_(b2).addcmul_(grad, grad, value=1 - b2)
                    v_hat = state["v"] / (1 - b2**t)
                else:
                    state["m1"].add_(grad, alpha=b1)
                    state["v"].addcmul_(grad, grad, value=b2)
                    v_hat = state["v"]
                o1 = self._ns(group, state["m1"])
                update = (o1 + group["alpha"] * state["o2"]) / (v_hat + group["eps"]).sqrt()
                p.add_(update, alpha=-group["lr"])
        return loss
