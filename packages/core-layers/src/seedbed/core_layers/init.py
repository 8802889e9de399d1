"""Weight initialisation (seed 001, pattern 8): GPT-2 style normal init and residual scaling."""

from __future__ import annotations

import math

import torch
from torch import nn

from seedbed.core_layers._checks import check_positive_int
from seedbed.core_layers.norms import RMSNorm

__all__ = ["INIT_METHODS", "init_residual_scaling", "init_weights"]

INIT_METHODS = ("normal", "truncated_normal", "xavier")
RESIDUAL_OUTPUT_NAMES = ("o_proj", "down_proj", "out_proj")


def init_weights(module: nn.Module, *, method: str = "normal", std: float = 0.02) -> nn.Module:
    """Initialise every ``nn.Linear``, ``nn.Embedding`` and norm inside ``module`` in place.

    Linear weights: ``normal(0, std)``, ``trunc_normal(0, std, +-2 std)`` or Xavier-uniform;
    linear biases: zero. Embeddings: ``normal(0, std)``. RMSNorm/LayerNorm: weight 1, bias 0.

    Returns:
        ``module`` (for chaining).
    """
    if method not in INIT_METHODS:
        raise ValueError(f"method must be one of {INIT_METHODS}, got {method!r}")
    if not (isinstance(std, (int, float)) and std > 0):
        raise ValueError(f"std must be a number > 0, got {std!r}")

    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            if method == "normal":
                nn.init.normal_(m.weight, std=std)
            elif method == "truncated_normal":
                nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
            else:
                nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=std)
        elif isinstance(m, (RMSNorm, nn.LayerNorm)):
            weight, bias = getattr(m, "weight", None), getattr(m, "bias", None)
            if isinstance(weight, torch.Tensor):
                nn.init.ones_(weight)
            if isinstance(bias, torch.Tensor):
                nn.init.zeros_(bias)

    module.apply(_init)
    return module


def init_residual_scaling(
    module: nn.Module, n_layers: int, *, names: tuple[str, ...] = RESIDUAL_OUTPUT_NAMES
) -> list[str]:
    """Scale the weights of residual-branch output projections by ``1 / sqrt(2 * n_layers)``.

    GPT-2's rule: each layer adds two residual branches (attention, MLP), so the variance of the
    residual stream stays O(1) with depth. A weight is scaled if the name of the submodule that
    owns it ends with one of ``names`` (HF names by default: ``o_proj``, ``down_proj``,
    ``out_proj``). The weights are scaled in place, visibly to version counters, so caches
    keyed on them (such as ``Qwen2Model``'s inference copies) see the change.

    Returns:
        The names of the parameters scaled.

    Raises:
        ValueError: if no parameter matched (so a naming mismatch cannot pass silently).
    """
    check_positive_int(n_layers, "n_layers")
    factor = 1.0 / math.sqrt(2 * n_layers)
    scaled = []
    for mod_name, sub in module.named_modules():
        if mod_name.split(".")[-1] in names and isinstance(
            getattr(sub, "weight", None), nn.Parameter
        ):
            with torch.no_grad():  # not ``.data``: the write must bump the version counter
                sub.weight.mul_(factor)
            scaled.append(f"{mod_name}.weight")
    if not scaled:
        raise ValueError(
            f"init_residual_scaling found no submodule named one of {names} in {type(module).__name__}"
        )
    return scaled
