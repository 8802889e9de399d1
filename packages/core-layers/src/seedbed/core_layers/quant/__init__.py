"""4-bit quantized LoRA (QLoRA): NF4 block quantization with double quant, NF4Linear, LoRA."""

from seedbed.core_layers.quant.linear import NF4Linear
from seedbed.core_layers.quant.lora import QuantLoRALinear, apply_quant_lora, lora_parameters
from seedbed.core_layers.quant.nf4 import (
    NF4_CODE,
    NF4Tensor,
    dequantize_nf4,
    dynamic_map,
    quantize_nf4,
)

__all__ = [
    "NF4_CODE",
    "NF4Linear",
    "NF4Tensor",
    "QuantLoRALinear",
    "apply_quant_lora",
    "dequantize_nf4",
    "dynamic_map",
    "lora_parameters",
    "quantize_nf4",
]
