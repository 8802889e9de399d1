"""A frozen linear layer whose weight is stored in NF4 (QLoRA's quantized base layer)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seedbed.core_layers.quant.nf4 import NF4Tensor, quantize_nf4

__all__ = ["NF4Linear"]


def _f32_as_i32(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32)


class NF4Linear(nn.Module):
    """y = x Ŵᵀ + b with Ŵ the NF4-dequantized weight; nothing here is trainable.

    The quantized weight lives in integer buffers (``weight_packed`` uint8, ``weight_absmax``
    uint8 or fp32 bits as int32, and with double quantization ``weight_absmax_scale`` /
    ``weight_absmax_offset`` as int32 bit patterns of fp32), so ``module.to(dtype)`` cannot
    perturb the stored scales; they follow ``module.to(device)`` and save with safetensors.
    The forward dequantizes to the input's dtype and calls ``F.linear``.

    Build one with :meth:`from_linear` or :meth:`from_weight`.
    """

    weight_packed: torch.Tensor
    weight_absmax: torch.Tensor
    weight_absmax_scale: torch.Tensor | None
    weight_absmax_offset: torch.Tensor | None

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        block_size: int = 64,
        double_quant: bool = True,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(f"in/out features must be >= 1, got {in_features}, {out_features}")
        self.in_features, self.out_features = in_features, out_features
        n = in_features * out_features
        q = quantize_nf4(
            torch.zeros(out_features, in_features, dtype=dtype, device=device),
            block_size,
            double_quant,
            pad=n % block_size != 0,
        )
        self.block_size = block_size
        self.weight_dtype = dtype
        self._set_quant(q)
        if bias:
            self.bias = nn.Parameter(
                torch.zeros(out_features, dtype=dtype, device=device), requires_grad=False
            )
        else:
            self.register_parameter("bias", None)

    def _set_quant(self, q: NF4Tensor) -> None:
        self.double_quant = q.double_quant
        self.register_buffer("weight_packed", q.packed)
        absmax = q.absmax if q.double_quant else _f32_as_i32(q.absmax)
        self.register_buffer("weight_absmax", absmax)
        if q.double_quant:
            assert q.absmax_scale is not None
            assert q.absmax_offset is not None
            self.register_buffer("weight_absmax_scale", _f32_as_i32(q.absmax_scale))
            self.register_buffer("weight_absmax_offset", _f32_as_i32(q.absmax_offset.reshape(1)))
        else:  # None buffers: not saved, but still filled in place by set_weight
            self.register_buffer("weight_absmax_scale", None)
            self.register_buffer("weight_absmax_offset", None)

    @property
    def quant_weight(self) -> NF4Tensor:
        """The stored weight as an :class:`NF4Tensor` (views of the buffers, no copy)."""
        scale_bits, offset_bits = self.weight_absmax_scale, self.weight_absmax_offset
        if scale_bits is not None and offset_bits is not None:  # double quantization
            absmax = self.weight_absmax
            scale: torch.Tensor | None = scale_bits.view(torch.float32)
            offset: torch.Tensor | None = offset_bits.view(torch.float32)[0]
        else:
            absmax, scale, offset = self.weight_absmax.view(torch.float32), None, None
        return NF4Tensor(
            self.weight_packed,
            absmax,
            scale,
            offset,
            torch.Size((self.out_features, self.in_features)),
            self.weight_dtype,
            self.block_size,
        )

    def set_weight(self, weight: torch.Tensor) -> None:
        """Re-quantize ``weight`` (out, in) into this layer (used by LoRA merge)."""
        if tuple(weight.shape) != (self.out_features, self.in_features):
            raise ValueError(
                f"weight must be ({self.out_features}, {self.in_features}), got {tuple(weight.shape)}"
            )
        q = quantize_nf4(
            weight, self.block_size, self.double_quant, pad=weight.numel() % self.block_size != 0
        )
        self.weight_packed = q.packed
        if q.double_quant:
            assert q.absmax_scale is not None
            assert q.absmax_offset is not None
            self.weight_absmax = q.absmax
            self.weight_absmax_scale = _f32_as_i32(q.absmax_scale)
            self.weight_absmax_offset = _f32_as_i32(q.absmax_offset.reshape(1))
        else:
            self.weight_absmax = _f32_as_i32(q.absmax)

    def dequantized_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """(out, in) dequantized weight in ``dtype`` (default: the original weight dtype)."""
        w = self.quant_weight.dequantize()
        return w if dtype is None else w.to(dtype)

    @classmethod
    def from_weight(
        cls,
        weight: torch.Tensor,
        bias: torch.Tensor | None = None,
        *,
        block_size: int = 64,
        double_quant: bool = True,
    ) -> NF4Linear:
        """Quantize an (out, in) weight (zero-padding the last block if needed)."""
        if weight.dim() != 2:
            raise ValueError(f"weight must be 2-D (out, in), got shape {tuple(weight.shape)}")
        out_f, in_f = weight.shape
        m = cls.__new__(cls)
        nn.Module.__init__(m)
        m.in_features, m.out_features = in_f, out_f
        m.block_size = block_size
        m.weight_dtype = weight.dtype
        q = quantize_nf4(weight, block_size, double_quant, pad=weight.numel() % block_size != 0)
        m._set_quant(q)
        if bias is not None:
            m.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)
        else:
            m.register_parameter("bias", None)
        return m

    @classmethod
    def from_linear(
        cls, linear: nn.Linear, *, block_size: int = 64, double_quant: bool = True
    ) -> NF4Linear:
        """A frozen NF4 copy of ``linear`` (its bias kept in full precision, frozen)."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"from_linear expects an nn.Linear, got {type(linear).__name__}")
        return cls.from_weight(
            linear.weight, linear.bias, block_size=block_size, double_quant=double_quant
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., in) -> (..., out)."""
        w = self.dequantized_weight(x.dtype)
        b = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, w, b)

    @property
    def bits_per_param(self) -> float:
        """Measured storage of the quantized weight in bits per weight element."""
        return self.quant_weight.bits_per_param

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, block_size={self.block_size}, "
            f"double_quant={self.double_quant}, bits_per_param={self.bits_per_param:.3f}"
        )
