"""Weight-only quantization of a model's linear layers for serving: int8 and NF4.

int8: symmetric per-output-channel scales, ``w ≈ scale[o] * q[o, i]`` with ``q`` in [-127, 127];
activations stay in the model dtype. NF4 (4-bit NormalFloat, QLoRA) comes from core-layers
(``seedbed.core_layers.NF4Linear``). Embeddings, norms and the LM head stay in full precision.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Int8Linear", "quantize_model"]

# Projections that are quantized (HF names): attention and MLP.
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class Int8Linear(nn.Module):
    """A frozen linear layer with int8 weights and per-output-channel scales.

    Shapes:
        x: (..., in_features) -> (..., out_features).
    """

    weight_int8: torch.Tensor
    scale: torch.Tensor
    bias: torch.Tensor | None

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer(
            "weight_int8", torch.zeros(out_features, in_features, dtype=torch.int8)
        )
        self.register_buffer("scale", torch.ones(out_features))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8Linear:
        """Quantize ``linear`` (its weight is not modified)."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"from_linear needs an nn.Linear, got {type(linear).__name__}")
        w = linear.weight.detach().float()  # (out, in)
        scale = w.abs().amax(dim=1).clamp_min(1e-12) / 127.0  # (out,)
        q = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8)
        out = cls(linear.in_features, linear.out_features, bias=linear.bias is not None)
        out.weight_int8 = q.to(linear.weight.device)
        out.scale = scale.to(device=linear.weight.device, dtype=linear.weight.dtype)
        if linear.bias is not None:
            out.bias = linear.bias.detach().clone()
        return out

    def dequantize(self) -> torch.Tensor:
        """(out, in) weight in the scale's dtype."""
        return self.weight_int8.to(self.scale.dtype) * self.scale[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, self.in_features)
        if x2.device.type == "cpu" and x2.dtype in (torch.float32, torch.bfloat16, torch.float16):
            # Fused int8-weight matmul (dequantizes inside the kernel).
            y = torch._weight_int8pack_mm(
                x2.contiguous(), self.weight_int8, self.scale.to(x2.dtype)
            )
        else:
            y = F.linear(x2, self.dequantize().to(x2.dtype))
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def quantize_model(
    model: nn.Module, mode: str, targets: tuple[str, ...] = DEFAULT_TARGETS
) -> nn.Module:
    """Replace the ``nn.Linear`` children named in ``targets`` by quantized layers, in place.

    Args:
        model: any module (a :class:`~seedbed.sequence_models.Qwen2Model`).
        mode: ``"int8"`` or ``"nf4"``.
        targets: attribute names of the linears to quantize.

    Returns:
        ``model`` (for chaining).
    """
    if mode not in ("int8", "nf4"):
        raise ValueError(f"mode must be 'int8' or 'nf4', got {mode!r}")
    if mode == "nf4":
        from seedbed.core_layers import NF4Linear

        def make(lin: nn.Linear) -> nn.Module:
            return NF4Linear.from_linear(lin)
    else:

        def make(lin: nn.Linear) -> nn.Module:
            return Int8Linear.from_linear(lin)

    todo = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if name in targets and type(child) is nn.Linear
    ]
    if not todo:
        raise ValueError(f"no nn.Linear named {targets} found to quantize")
    for parent, name, child in todo:
        setattr(parent, name, make(child))
    return model
