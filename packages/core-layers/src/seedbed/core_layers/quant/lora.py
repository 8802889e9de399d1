"""LoRA adapters over (optionally NF4-quantized) linear layers: QLoRA (seed 002, S-4).

Hu et al. 2021 (LoRA) with PEFT's conventions, so results equal ``peft.LoraConfig`` /
``get_peft_model`` given the same A and B:

    y = base(x) + B(A(dropout(x))) · s,   s = lora_alpha / r   (rsLoRA: lora_alpha / sqrt(r))

A: (r, in) Kaiming-uniform(a=sqrt(5)) like nn.Linear, B: (out, r) zeros, so a fresh adapter
changes nothing. ``merge()`` folds ΔW = B A · s into the base weight, ``unmerge()`` takes it out.
With an NF4 base (Dettmers et al. 2023) the merge dequantizes, adds ΔW and re-quantizes (as PEFT
does for bitsandbytes' Linear4bit); the pre-merge NF4 buffers are kept, so ``unmerge()``
restores the base exactly instead of subtracting ΔW from a re-quantized weight.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterable

import torch
from torch import nn

from seedbed.core_layers.quant.linear import NF4Linear

__all__ = ["QuantLoRALinear", "apply_quant_lora", "lora_parameters"]


class QuantLoRALinear(nn.Module):
    """A frozen base linear (``nn.Linear`` or :class:`NF4Linear`) plus a trainable LoRA A/B.

    Args:
        base: the layer to adapt; its parameters are frozen.
        r: LoRA rank (> 0).
        lora_alpha: scaling numerator (> 0).
        lora_dropout: dropout on the adapter input, in [0, 1).
        use_rslora: scale by lora_alpha / sqrt(r) (Kalajdzievski 2023) instead of lora_alpha / r.
    """

    def __init__(
        self,
        base: nn.Linear | NF4Linear,
        r: int = 8,
        lora_alpha: float = 16.0,
        lora_dropout: float = 0.0,
        use_rslora: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(base, (nn.Linear, NF4Linear)):
            raise TypeError(f"base must be nn.Linear or NF4Linear, got {type(base).__name__}")
        if isinstance(r, bool) or not isinstance(r, int) or r <= 0:
            raise ValueError(f"r must be a positive int, got {r!r}")
        if not lora_alpha > 0:
            raise ValueError(f"lora_alpha must be > 0, got {lora_alpha!r}")
        if not 0.0 <= lora_dropout < 1.0:
            raise ValueError(f"lora_dropout must be in [0, 1), got {lora_dropout!r}")
        self.base_layer = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.in_features, self.out_features = base.in_features, base.out_features
        self.r, self.lora_alpha, self.use_rslora = r, float(lora_alpha), bool(use_rslora)
        self.scaling = self.lora_alpha / (math.sqrt(r) if use_rslora else r)
        if isinstance(base, nn.Linear):
            dtype, device = base.weight.dtype, base.weight.device
        else:
            dtype, device = base.weight_dtype, base.weight_packed.device
        self.lora_A = nn.Linear(self.in_features, r, bias=False, dtype=dtype, device=device)
        self.lora_B = nn.Linear(r, self.out_features, bias=False, dtype=dtype, device=device)
        self.lora_dropout: nn.Module = (
            nn.Dropout(lora_dropout) if lora_dropout > 0 else nn.Identity()
        )
        self._merged = False
        self._saved_quant: dict[str, torch.Tensor] | None = None
        self.reset_lora_parameters()

    def reset_lora_parameters(self) -> None:
        """A ~ Kaiming-uniform(a=sqrt(5)) (nn.Linear's default), B = 0."""
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)

    @property
    def merged(self) -> bool:
        return self._merged

    def delta_weight(self) -> torch.Tensor:
        """ΔW = B A · scaling, shape (out, in)."""
        return (self.lora_B.weight @ self.lora_A.weight) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., in) -> (..., out)."""
        result = self.base_layer(x)
        if self._merged:
            return result
        out_dtype = result.dtype
        xa = x.to(self.lora_A.weight.dtype)
        result = result + self.lora_B(self.lora_A(self.lora_dropout(xa))) * self.scaling
        return result.to(out_dtype)

    @torch.no_grad()
    def merge(self) -> None:
        """Fold ΔW into the base weight; the forward then runs the base alone."""
        if self._merged:
            warnings.warn("QuantLoRALinear.merge(): already merged, nothing done", stacklevel=2)
            return
        base = self.base_layer
        delta = self.delta_weight()
        if isinstance(base, nn.Linear):
            base.weight.data += delta.to(base.weight.dtype)
        else:
            self._saved_quant = {
                n: b.clone() for n, b in base.named_buffers(recurse=False) if b is not None
            }
            w = base.dequantized_weight(torch.float32) + delta.float()
            base.set_weight(w.to(base.weight_dtype))
        self._merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Undo :meth:`merge` (NF4 base: restores the stored pre-merge quantized weight)."""
        if not self._merged:
            warnings.warn("QuantLoRALinear.unmerge(): not merged, nothing done", stacklevel=2)
            return
        base = self.base_layer
        if isinstance(base, nn.Linear):
            base.weight.data -= self.delta_weight().to(base.weight.dtype)
        else:
            assert self._saved_quant is not None
            for name, buf in self._saved_quant.items():
                setattr(base, name, buf)
            self._saved_quant = None
        self._merged = False

    def extra_repr(self) -> str:
        return (
            f"r={self.r}, lora_alpha={self.lora_alpha}, scaling={self.scaling:.4g}, "
            f"use_rslora={self.use_rslora}, merged={self._merged}"
        )


def _matches(name: str, target_modules: str | Iterable[str]) -> bool:
    # PEFT's rule: a string is a regex matched against the full name; a list matches a module
    # whose name equals an entry or ends with "." + entry.
    if isinstance(target_modules, str):
        return re.fullmatch(target_modules, name) is not None
    return any(name == t or name.endswith("." + t) for t in target_modules)


def apply_quant_lora(
    model: nn.Module,
    target_modules: str | Iterable[str] = ("q_proj", "v_proj"),
    r: int = 8,
    lora_alpha: float = 16.0,
    lora_dropout: float = 0.0,
    use_rslora: bool = False,
    *,
    quantize: bool = True,
    block_size: int = 64,
    double_quant: bool = True,
) -> nn.Module:
    """Replace the matching ``nn.Linear`` layers by :class:`QuantLoRALinear` in place.

    Matching follows PEFT: a list of names matches modules whose qualified name equals an entry
    or ends with ``"." + entry``; a string is a regular expression matched against the whole
    name. With ``quantize`` the base weights become :class:`NF4Linear` (QLoRA). Afterwards only
    the LoRA parameters (``lora_A``/``lora_B``) are trainable.

    Returns:
        ``model`` (modified in place).

    Raises:
        ValueError: no module matched, or bad LoRA hyper-parameters (nothing is modified then).
        TypeError: a matched module is not an ``nn.Linear``.
    """
    if isinstance(target_modules, str):
        targets: str | list[str] = target_modules
    else:
        targets = list(target_modules)
        if not targets:
            raise ValueError("target_modules must name at least one module")
    if isinstance(r, bool) or not isinstance(r, int) or r <= 0:
        raise ValueError(f"r must be a positive int, got {r!r}")
    matched = [(n, m) for n, m in model.named_modules() if n and _matches(n, targets)]
    if not matched:
        raise ValueError(
            f"target_modules {target_modules!r} matched no module of {type(model).__name__}"
        )
    for name, mod in matched:
        if not isinstance(mod, nn.Linear):
            raise TypeError(f"target module {name!r} is a {type(mod).__name__}, expected nn.Linear")
    # build every replacement first so that a failure leaves the model untouched
    replacements = []
    for name, mod in matched:
        assert isinstance(mod, nn.Linear)
        base: nn.Linear | NF4Linear = (
            NF4Linear.from_linear(mod, block_size=block_size, double_quant=double_quant)
            if quantize
            else mod
        )
        replacements.append((name, QuantLoRALinear(base, r, lora_alpha, lora_dropout, use_rslora)))
    for name, new in replacements:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, new)
    for pname, p in model.named_parameters():
        p.requires_grad_(".lora_A." in f".{pname}" or ".lora_B." in f".{pname}")
    return model


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The LoRA A/B parameters of ``model`` (what an optimizer should train)."""
    return [
        p for n, p in model.named_parameters() if ".lora_A." in f".{n}" or ".lora_B." in f".{n}"
    ]
