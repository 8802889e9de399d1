"""Seedbed core layers: the building blocks every Seedbed model stands on.

Imports are one statement per module, in module order, so that sibling issues can add theirs;
``__all__`` is grouped by topic, one name per line: add a commented group for a new family.
"""

from importlib.metadata import version as _version

from seedbed.core_layers.attention import (
    _HAS_FLASH2,
    _HAS_FLASH3,
    MultiHeadAttention,
    attention,
    chunked_attention,
    last_backend,
    math_attention,
    topk_sparse_attention,
)
from seedbed.core_layers.benchmarking import Metric, Series, time_call, timed_ratio
from seedbed.core_layers.checkpointing import Checkpointed, checkpointed
from seedbed.core_layers.device import get_device, get_device_info
from seedbed.core_layers.init import init_residual_scaling, init_weights
from seedbed.core_layers.kv_cache import KVCache
from seedbed.core_layers.memory import peak_memory_bytes
from seedbed.core_layers.mlp import SwiGLU
from seedbed.core_layers.moe import (
    HashRouter,
    MoELayer,
    Router,
    RouterOutput,
    SwitchRouter,
    load_balancing_loss,
    moe_dispatch,
    router_z_loss,
)
from seedbed.core_layers.norms import RMSNorm
from seedbed.core_layers.optim import DeltaGradientDescent, M3Optimizer, newton_schulz
from seedbed.core_layers.quant import (
    NF4Linear,
    NF4Tensor,
    QuantLoRALinear,
    apply_quant_lora,
    dequantize_nf4,
    lora_parameters,
    quantize_nf4,
)
from seedbed.core_layers.rope import RotaryEmbedding, apply_rotary_emb
from seedbed.core_layers.stability import NumericalStabilityMonitor
from seedbed.core_layers.training import (
    BenchmarkResults,
    MetricsLogger,
    Trainer,
    TrainerConfig,
    TrainingMetrics,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)

__version__ = _version("seedbed-core-layers")

__all__ = [  # noqa: RUF022 (grouped by topic, not sorted)
    # attention
    "_HAS_FLASH2",
    "_HAS_FLASH3",
    "MultiHeadAttention",
    "attention",
    "chunked_attention",
    "last_backend",
    "math_attention",
    "topk_sparse_attention",
    # norms, positions, MLP, cache
    "KVCache",
    "RMSNorm",
    "RotaryEmbedding",
    "SwiGLU",
    "apply_rotary_emb",
    # init, memory, device helpers
    "Checkpointed",
    "checkpointed",
    "get_device",
    "get_device_info",
    "init_residual_scaling",
    "init_weights",
    "peak_memory_bytes",
    # mixture of experts (seed 002, S-1)
    "HashRouter",
    "MoELayer",
    "Router",
    "RouterOutput",
    "SwitchRouter",
    "load_balancing_loss",
    "moe_dispatch",
    "router_z_loss",
    # 4-bit quantized LoRA (seed 002, S-4)
    "NF4Linear",
    "NF4Tensor",
    "QuantLoRALinear",
    "apply_quant_lora",
    "dequantize_nf4",
    "lora_parameters",
    "quantize_nf4",
    # Nested Learning optimizers (seed 000)
    "DeltaGradientDescent",
    "M3Optimizer",
    "newton_schulz",
    # training and stability
    "BenchmarkResults",
    "MetricsLogger",
    "NumericalStabilityMonitor",
    "Trainer",
    "TrainerConfig",
    "TrainingMetrics",
    "latest_checkpoint",
    "load_checkpoint",
    "save_checkpoint",
    # benchmarking
    "Metric",
    "Series",
    "__version__",
    "time_call",
    "timed_ratio",
]
