"""4-bit NormalFloat (NF4) block quantization with double quantization (QLoRA, S-4).

Dettmers et al. 2023, "QLoRA: Efficient Finetuning of Quantized LLMs":

- Weights are cut into blocks of 64; each block is scaled by its absmax into [-1, 1] and every
  value is rounded to the nearest of the 16 NF4 levels (quantiles of N(0, 1), Appendix E).
  Two 4-bit codes share a byte, the first element in the high nibble.
- Double quantization (Sec. 3): the fp32 absmax values (one per block) are centred by their
  mean and quantized again to 8 bits with bitsandbytes' signed dynamic map, in blocks of 256,
  keeping one fp32 scale per 256 absmax values. Storage: 4 + 8/64 + 32/(64·256) ≈ 4.127 bits
  per parameter.

The layout and the rounding are those of ``bitsandbytes.functional.quantize_4bit(...,
quant_type="nf4")`` on CPU, bit for bit: the 4-bit step rounds to the nearest level through the
same fp32 midpoints, and the 8-bit step of the double quantization reproduces bitsandbytes'
CPU kernel, which looks the normalised value up in a 65536-entry table
(``trunc(((v + 1) / 2) · 65535 + 0.5)``) built from the midpoints of the dynamic map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["NF4_CODE", "NF4Tensor", "dequantize_nf4", "dynamic_map", "quantize_nf4"]

# The 16 NF4 levels (QLoRA Appendix E), as float32 values identical to bitsandbytes'.
NF4_CODE: tuple[float, ...] = (
    -1.0,
    -0.6961928009986877,
    -0.5250730514526367,
    -0.39491748809814453,
    -0.28444138169288635,
    -0.18477343022823334,
    -0.09105003625154495,
    0.0,
    0.07958029955625534,
    0.16093020141124725,
    0.24611230194568634,
    0.33791524171829224,
    0.44070982933044434,
    0.5626170039176941,
    0.7229568362236023,
    1.0,
)
_DQ_BLOCK = 256  # block size of the second (8-bit) quantization, as in bitsandbytes
_LUT_SIZE = 65536
_TABLES: dict[tuple[str, torch.device], torch.Tensor] = {}


def dynamic_map() -> torch.Tensor:
    """bitsandbytes' signed 8-bit dynamic map (Dettmers 2016), 256 sorted fp32 values.

    Values d·10^(e-6) for e = 0..6 and fractions d from a linear grid in [0.1, 1], plus 0 and 1.
    """
    data: list[float] = []
    for i in range(7):  # max_exponent_bits = 7, signed, total_bits = 8
        n_fraction = 2**i + 1
        bounds = torch.linspace(0.1, 1, n_fraction, dtype=torch.float32)
        means = (bounds[:-1] + bounds[1:]) / 2.0
        scale = 10 ** (-6 + i)
        data += (scale * means).tolist()  # fp32 products, as bitsandbytes computes them
        data += (-scale * means).tolist()
    data += [0.0, 1.0]
    data.sort()
    return torch.tensor(data, dtype=torch.float32)


def _table(name: str, device: torch.device) -> torch.Tensor:
    key = (name, device)
    if key not in _TABLES:
        if name == "nf4":
            t = torch.tensor(NF4_CODE, dtype=torch.float32)
        elif name == "nf4_mid":
            c = torch.tensor(NF4_CODE, dtype=torch.float32)
            t = (c[:-1] + c[1:]) / 2
        elif name == "dyn":
            t = dynamic_map()
        else:  # "dyn_lut": normalised value grid -> nearest dynamic-map index
            c = dynamic_map()
            mid = 0.5 * (c[:-1] + c[1:])
            grid = -1.0 + (2.0 * torch.arange(_LUT_SIZE, dtype=torch.float32)) / float(
                _LUT_SIZE - 1
            )
            t = torch.searchsorted(mid, grid, right=False)  # count of midpoints < grid value
        _TABLES[key] = t.to(device)
    return _TABLES[key]


def _quantize_dynamic_8bit(a: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Blockwise 8-bit dynamic quantization of a 1-D fp32 tensor (bitsandbytes CPU rounding).

    Returns:
        (codes (n,) uint8, absmax (ceil(n/block),) fp32); a trailing partial block has its own
        absmax.
    """
    n = a.numel()
    nb = -(-n // block)
    padded = F.pad(a, (0, nb * block - n)).view(nb, block)  # zeros leave each absmax unchanged
    absmax = padded.abs().amax(dim=1)  # (nb,)
    inv = 1.0 / absmax
    v = (padded * inv[:, None]).clamp(-1.0, 1.0)
    idx = (((v + 1.0) * 0.5) * float(_LUT_SIZE - 1) + 0.5).to(torch.int64)
    idx = torch.where((absmax == 0)[:, None], torch.zeros_like(idx), idx)
    lut = _table("dyn_lut", a.device)
    codes = lut[idx].to(torch.uint8)
    codes = torch.where((absmax == 0)[:, None], torch.zeros_like(codes), codes)
    return codes.reshape(-1)[:n], absmax


@dataclass
class NF4Tensor:
    """A weight quantized to NF4, with its (optionally double-quantized) block scales.

    Attributes:
        packed: (numel_padded / 2,) uint8, element 2i in the high nibble, 2i+1 in the low one.
        absmax: (num_blocks,) fp32 block scales, or uint8 codes with double quantization.
        absmax_scale: (ceil(num_blocks/256),) fp32 second-level scales (double quant), else None.
        absmax_offset: () fp32 mean subtracted from the absmax before the 8-bit step, else None.
        shape: original shape.
        dtype: original dtype (``dequantize`` returns it).
        block_size: elements per NF4 block.
    """

    packed: torch.Tensor
    absmax: torch.Tensor
    absmax_scale: torch.Tensor | None
    absmax_offset: torch.Tensor | None
    shape: torch.Size
    dtype: torch.dtype
    block_size: int

    @property
    def double_quant(self) -> bool:
        return self.absmax_scale is not None

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def device(self) -> torch.device:
        return self.packed.device

    def block_absmax(self) -> torch.Tensor:
        """(num_blocks,) fp32 block scales (decoded from 8 bits with double quantization)."""
        if self.absmax_scale is None:
            return self.absmax
        assert self.absmax_offset is not None
        code = _table("dyn", self.absmax.device)
        n = self.absmax.numel()
        vals = code[self.absmax.to(torch.int64)]  # (nb,)
        scale = self.absmax_scale.repeat_interleave(_DQ_BLOCK)[:n]
        return vals * scale + self.absmax_offset

    def codes(self) -> torch.Tensor:
        """(numel_padded,) int64 NF4 level indices 0..15."""
        p = self.packed.to(torch.int64)
        return torch.stack([p >> 4, p & 0xF], dim=-1).reshape(-1)

    def dequantize(self) -> torch.Tensor:
        """The dequantized weight, shape ``shape`` and dtype ``dtype`` (computed in fp32)."""
        vals = _table("nf4", self.device)[self.codes()]  # (numel_padded,) fp32
        absmax = self.block_absmax()
        out = (vals.view(-1, self.block_size) * absmax[:, None]).reshape(-1)[: self.numel]
        return out.view(self.shape).to(self.dtype)

    @property
    def nbytes(self) -> int:
        """Bytes held by this tensor's own buffers (the shared code tables not counted)."""
        parts = [self.packed, self.absmax, self.absmax_scale, self.absmax_offset]
        return sum(p.numel() * p.element_size() for p in parts if p is not None)

    @property
    def bits_per_param(self) -> float:
        """Measured storage: 8 · nbytes / numel."""
        return 8.0 * self.nbytes / self.numel

    def to(self, device: torch.device | str) -> NF4Tensor:
        """A copy on ``device``."""

        def mv(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return NF4Tensor(
            self.packed.to(device),
            self.absmax.to(device),
            mv(self.absmax_scale),
            mv(self.absmax_offset),
            self.shape,
            self.dtype,
            self.block_size,
        )


def quantize_nf4(
    weight: torch.Tensor, block_size: int = 64, double_quant: bool = True, *, pad: bool = False
) -> NF4Tensor:
    """Quantize a floating tensor to NF4 (QLoRA), optionally double-quantizing the block scales.

    Args:
        weight: any-shape floating tensor.
        block_size: elements per block (even, >= 2); QLoRA uses 64.
        double_quant: quantize the fp32 absmax to 8 bits in blocks of 256 (QLoRA Sec. 3).
        pad: zero-pad the flattened tensor to a multiple of ``block_size``; without it a size
            that is not a multiple raises ValueError.

    Returns:
        :class:`NF4Tensor`.
    """
    if not isinstance(weight, torch.Tensor) or not weight.is_floating_point():
        raise TypeError(
            f"weight must be a floating-point tensor, got "
            f"{weight.dtype if isinstance(weight, torch.Tensor) else type(weight).__name__}"
        )
    if not isinstance(block_size, int) or block_size < 2 or block_size % 2:
        raise ValueError(f"block_size must be an even int >= 2, got {block_size!r}")
    n = weight.numel()
    if n == 0:
        raise ValueError("cannot quantize an empty tensor")
    rem = n % block_size
    if rem and not pad:
        raise ValueError(
            f"weight has {n} elements, not a multiple of block_size={block_size} "
            f"({rem} left over); pass pad=True to zero-pad the last block"
        )
    a = weight.detach().reshape(-1).float()
    if rem:
        a = F.pad(a, (0, block_size - rem))
    blocks = a.view(-1, block_size)  # (nb, bs)
    absmax = blocks.abs().amax(dim=1)  # (nb,) fp32
    scaled = (blocks * (1.0 / absmax.clamp(min=1e-38))[:, None]).clamp(-1.0, 1.0)
    q = torch.bucketize(scaled.reshape(-1), _table("nf4_mid", a.device)).to(torch.uint8)
    packed = (q[0::2] << 4) | q[1::2]  # (numel_padded / 2,)
    if not double_quant:
        return NF4Tensor(packed, absmax, None, None, weight.shape, weight.dtype, block_size)
    offset = absmax.mean()
    codes, scale = _quantize_dynamic_8bit(absmax - offset, _DQ_BLOCK)
    return NF4Tensor(packed, codes, scale, offset, weight.shape, weight.dtype, block_size)


def dequantize_nf4(t: NF4Tensor) -> torch.Tensor:
    """Functional form of :meth:`NF4Tensor.dequantize`."""
    return t.dequantize()
