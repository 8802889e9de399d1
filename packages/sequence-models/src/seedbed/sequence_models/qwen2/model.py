"""Qwen2 decoder-only causal LM built from core-layers blocks.

Per layer: ``x + attn(rmsnorm(x))`` then ``x + swiglu(rmsnorm(x))``, where attention is
``seedbed.core_layers.MultiHeadAttention`` (GQA, RoPE with ``rope_theta``, q/k/v biases, no
o_proj bias). Module names match HF ``Qwen2ForCausalLM`` without its ``model.`` prefix, so the
checkpoint name mapping is one prefix (see :mod:`.checkpoint`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.module import _global_forward_hooks, _global_forward_pre_hooks

from seedbed.core_layers import KVCache, MultiHeadAttention, RMSNorm, RotaryEmbedding, SwiGLU
from seedbed.core_layers.attention.masks import check_attn_mask
from seedbed.core_layers.attention.module import cached_attention, split_qkv
from seedbed.core_layers.mlp import _plain_linear
from seedbed.sequence_models.qwen2.config import Qwen2Config

__all__ = ["Qwen2DecoderLayer", "Qwen2Model", "build_attn_masks", "positions_from_mask"]

AttnMasks = Mapping[int | None, torch.Tensor]


class Qwen2DecoderLayer(nn.Module):
    """Pre-norm transformer block: attention then SwiGLU, each with a residual."""

    def __init__(self, config: Qwen2Config, rope: RotaryEmbedding) -> None:
        super().__init__()
        d = config.hidden_size
        self.self_attn = MultiHeadAttention(
            d,
            config.num_attention_heads,
            config.num_key_value_heads,
            config.head_dim,
            bias=config.attention_bias,
            o_bias=False,
            rope=rope,
        )
        self.mlp = SwiGLU(d, config.intermediate_size)
        self.input_layernorm = RMSNorm(d, eps=config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(d, eps=config.rms_norm_eps)

    def forward(
        self,
        x: torch.Tensor,
        positions: torch.Tensor,
        attn_mask: torch.Tensor | None,
        cache: KVCache | None,
        causal: bool,
    ) -> torch.Tensor:
        """x: (B, S, d) -> (B, S, d)."""
        h = self.self_attn(
            self.input_layernorm(x),
            positions=positions,
            attn_mask=attn_mask,
            cache=cache,
            causal=causal,
        )
        x = x + h
        return x + self.mlp(self.post_attention_layernorm(x))

    def _hook_free(self) -> bool:
        """Whether this layer and its blocks have no forward hooks (so that
        ``Qwen2Model._run_layers`` may call their unchecked forms without skipping one)."""
        if self._forward_hooks or self._forward_pre_hooks:
            return False
        return not any(
            m is not None and (m._forward_hooks or m._forward_pre_hooks)
            for m in self._modules.values()
        )


class _LayerPlan(NamedTuple):
    """One decoder layer's weights laid out for inference (see ``Qwen2Model._inference_plan``).

    Every matmul is ``x @ w`` with ``w`` of shape (in, out): for a layer wider than its input
    (the fused q/k/v and gate/up projections, the LM head) a contiguous transposed copy, which
    for the few rows of a decode step is about twice as fast on CPU as ``F.linear``'s (out, in)
    weight (``seedbed-genbench``); otherwise a transposed view of the parameter itself.
    """

    norm1: torch.Tensor  # (d,) input_layernorm weight
    qkv: torch.Tensor  # (d, (H + 2 H_kv) D): [q; k; v] projection weights
    qkv_bias: torch.Tensor | None  # ((H + 2 H_kv) D,)
    o: torch.Tensor  # (H D, d)
    o_bias: torch.Tensor | None  # (d,)
    norm2: torch.Tensor  # (d,) post_attention_layernorm weight
    gate_up: torch.Tensor  # (d, 2 I): [gate; up] projection weights
    gate_up_bias: torch.Tensor | None  # (2 I,)
    down: torch.Tensor  # (I, d)
    down_bias: torch.Tensor | None  # (d,)


def _right_operand(weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """(in, out) operand ``w`` such that ``x @ w`` is ``F.linear(x, cat(weights))``.

    A contiguous copy when out > in (faster for few rows on CPU), else a view (no copy) of the
    one weight given, or of the concatenation of several.
    """
    w = weights[0].detach() if len(weights) == 1 else torch.cat(list(weights)).detach()  # (out, in)
    return w.t().contiguous() if w.shape[0] > w.shape[1] else w.t()


def _cat_bias(linears: Sequence[nn.Linear]) -> torch.Tensor | None:
    """Concatenated biases of ``linears`` (zeros for one without), or None if none has one."""
    if all(lin.bias is None for lin in linears):
        return None
    w = linears[0].weight
    return torch.cat(
        [
            torch.zeros(lin.out_features, dtype=w.dtype, device=w.device)
            if lin.bias is None
            else lin.bias.detach()
            for lin in linears
        ]
    )


def _detached(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach()


def _matmul(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``x @ w (+ bias)`` for x (N, in), w (in, out) -> (N, out)."""
    return torch.mm(x, w) if bias is None else torch.addmm(bias, x, w)


def _residual_matmul(
    x: torch.Tensor, a: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """``x + (a @ w (+ bias))`` for x (N, out), a (N, in), w (in, out); without a bias the add
    runs inside the matmul kernel."""
    if bias is None:
        return torch.addmm(x, a, w)
    return x + torch.addmm(bias, a, w)


def _rms_norm(norm: RMSNorm, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``norm(x)`` unchecked, with in-place steps where ``RMSNorm._norm`` allocates (the same
    operations in the same order, so the same values)."""
    if x.dtype == torch.float32 and weight.dtype == torch.float32:
        return (x * torch.rsqrt_(torch.mean(x * x, -1, keepdim=True).add_(norm.eps))).mul_(weight)
    return norm._norm(x)


def positions_from_mask(attention_mask: torch.Tensor, seq_len: int) -> torch.Tensor:
    """Positions of the last ``seq_len`` tokens when padding is marked in ``attention_mask``.

    Position = number of real tokens before this one (so a left-padded row counts from 0 at
    its first real token, as ``transformers`` generate does); padding positions are clamped to 0.

    Args:
        attention_mask: (B, T) 1/True for real tokens.
        seq_len: S <= T.

    Returns:
        (B, S) int64.
    """
    m = attention_mask.long()
    pos = (m.cumsum(-1) - 1).clamp_min(0)  # (B, T)
    return pos[:, -seq_len:]


def build_attn_masks(
    attention_mask: torch.Tensor,
    seq_len: int,
    windows: Sequence[int | None],
) -> dict[int | None, torch.Tensor]:
    """Boolean attention masks for S new queries against T keys with padding.

    Query ``i`` sits at key slot ``T - S + i``; it sees real keys ``j <= T - S + i`` (and, for a
    window w, ``T - S + i - j < w``). A padding query also sees its own slot so that no row is
    empty (its output is discarded).

    Args:
        attention_mask: (B, T) 1/True for real tokens (cache contents first, new tokens last).
        seq_len: S.
        windows: distinct windows in use (None = full attention).

    Returns:
        {window: (B, 1, S, T) bool}.
    """
    _b, t = attention_mask.shape
    dev = attention_mask.device
    key_ok = attention_mask.bool()[:, None, :]  # (B, 1, T)
    qi = torch.arange(t - seq_len, t, device=dev)[:, None]  # (S, 1) key slot of each query
    kj = torch.arange(t, device=dev)[None, :]  # (1, T)
    diag = (qi == kj)[None]  # (1, S, T)
    out: dict[int | None, torch.Tensor] = {}
    for w in dict.fromkeys(windows):
        band = kj <= qi
        if w is not None:
            band = band & ((qi - kj) < w)
        out[w] = ((key_ok & band[None]) | diag)[:, None]  # (B, 1, S, T)
    return out


class Qwen2Model(nn.Module):
    """Qwen2 causal language model (embeddings, decoder blocks, final norm, LM head).

    Args:
        config: a :class:`Qwen2Config`.

    Shapes:
        input_ids: (B, S) -> logits (B, S, vocab_size).
    """

    def __init__(self, config: Qwen2Config) -> None:
        super().__init__()
        if not isinstance(config, Qwen2Config):
            raise TypeError(f"config must be a Qwen2Config, got {type(config).__name__}")
        self.config = config
        assert config.head_dim is not None
        self.rope = RotaryEmbedding(config.head_dim, rope_theta=config.rope_theta)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(
            Qwen2DecoderLayer(config, self.rope) for _ in range(config.num_hidden_layers)
        )
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.lm_head: nn.Linear | None = (
            None
            if config.tie_word_embeddings
            else nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        )
        self.windows: list[int | None] = [
            config.layer_window(i) for i in range(config.num_hidden_layers)
        ]
        self._head_t: torch.Tensor | None = None  # inference copy of the head, (d, V)
        self._head_t_key: tuple[Any, ...] | None = None
        # inference layout of the layers' weights, see _inference_plan:
        # (key of the source tensors, per-layer plans, the source tensors (held so that no new
        # tensor can reuse their addresses while cached))
        self._plan: tuple[tuple[Any, ...], list[_LayerPlan], list[torch.Tensor]] | None = None
        self.reset_parameters()

    # ------------------------------------------------------------------ parameters
    def reset_parameters(self, std: float = 0.02) -> None:
        """Normal(0, std) weights, zero biases, unit norms (HF's Qwen2 initialisation)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=std)
            elif isinstance(m, RMSNorm):
                nn.init.ones_(m.weight)

    @property
    def device(self) -> torch.device:
        return self.embed_tokens.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.embed_tokens.weight.dtype

    def num_parameters(self) -> int:
        """Distinct parameters (a tied head counted once)."""
        return sum(p.numel() for p in self.parameters())

    def hf_state_dict(self) -> dict[str, torch.Tensor]:
        """State dict under HF ``Qwen2ForCausalLM`` names (no ``lm_head`` when tied)."""
        from seedbed.sequence_models.qwen2.checkpoint import ours_to_hf

        for name, mod in self.named_modules():
            if isinstance(mod, MultiHeadAttention | SwiGLU):
                for pname in (
                    "q_proj",
                    "k_proj",
                    "v_proj",
                    "o_proj",
                    "gate_proj",
                    "up_proj",
                    "down_proj",
                ):
                    sub = getattr(mod, pname, None)
                    if sub is not None and type(sub) is not nn.Linear:
                        raise TypeError(
                            f"cannot save {name}.{pname} of type {type(sub).__name__} in HF format; "
                            "save the model before quantizing it"
                        )
        return {ours_to_hf(k): v for k, v in self.state_dict().items()}

    def clear_inference_caches(self) -> None:
        """Drop the inference copies of the weights (the layers' fused plan, the (d, V) head).

        The next no-grad forward rebuilds them. They are rebuilt by themselves after any
        change PyTorch tracks (an optimiser step, ``load_state_dict``, ``nn.init``, ``.to()``,
        in-place ops under ``torch.no_grad()``); call this after writing weights through
        ``param.data``, which bumps no version counter.
        """
        self._plan = None
        self._head_t = self._head_t_key = None

    def load_hf_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load tensors keyed by our names (see ``checkpoint.hf_to_ours``), strictly."""
        self.load_state_dict(dict(state), strict=True)

    # ------------------------------------------------------------------ checkpoints
    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str], **kwargs: Any) -> Qwen2Model:
        """See :func:`seedbed.sequence_models.qwen2.checkpoint.load_pretrained`."""
        from seedbed.sequence_models.qwen2.checkpoint import load_pretrained

        return load_pretrained(path, **kwargs)

    def save_pretrained(self, path: str | os.PathLike[str], **kwargs: Any) -> None:
        """See :func:`seedbed.sequence_models.qwen2.checkpoint.save_pretrained`."""
        from seedbed.sequence_models.qwen2.checkpoint import save_pretrained

        save_pretrained(self, path, **kwargs)

    # ------------------------------------------------------------------ caches
    def make_caches(
        self, batch_size: int, max_seq_len: int, *, dtype: torch.dtype | None = None
    ) -> list[KVCache]:
        """One preallocated :class:`KVCache` per layer."""
        c = self.config
        assert c.head_dim is not None
        return [
            KVCache(
                batch_size,
                max_seq_len,
                c.num_key_value_heads,
                c.head_dim,
                dtype=dtype or self.dtype,
                device=self.device,
            )
            for _ in range(c.num_hidden_layers)
        ]

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        input_ids: torch.Tensor,
        *,
        attention_mask: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        caches: Sequence[KVCache] | None = None,
        attn_masks: AttnMasks | None = None,
        logits_to_keep: int = 0,
        return_hidden: bool = False,
    ) -> torch.Tensor:
        """Next-token logits.

        Args:
            input_ids: (B, S) token ids.
            attention_mask: (B, T) 1/True for real tokens over every key this call attends to:
                the cached tokens first, then the S new ones (T = cached + S). Left or right
                padding both work. Default: all real.
            positions: (B, S) or (S,) RoPE positions; default from ``attention_mask`` (count of
                real tokens before each one) or ``cached + arange(S)``.
            caches: one KV cache per layer (appended in place), or None.
            attn_masks: precomputed ``{window: (B, 1, S, T) bool}`` masks (overrides
                ``attention_mask``-derived masks; used by the paged engine).
            logits_to_keep: compute logits only for the last this-many positions (0 = all).
            return_hidden: return final-norm hidden states (B, S', d) instead of logits.

        Returns:
            (B, S', vocab_size) logits, S' = S or ``logits_to_keep``.
        """
        if not isinstance(input_ids, torch.Tensor) or input_ids.ndim != 2:
            raise ValueError(
                f"input_ids must be a (B, S) tensor, got {getattr(input_ids, 'shape', input_ids)!r}"
            )
        if input_ids.dtype in (
            torch.float16,
            torch.float32,
            torch.float64,
            torch.bfloat16,
            torch.bool,
        ):
            raise TypeError(f"input_ids must be an integer tensor, got {input_ids.dtype}")
        b, s = input_ids.shape
        if caches is not None and len(caches) != len(self.layers):
            raise ValueError(
                f"caches must have one entry per layer ({len(self.layers)}), got {len(caches)}"
            )
        if caches is not None:
            self._check_caches(caches, b, s)
        past = caches[0].size if caches is not None and attn_masks is None else 0
        if attention_mask is not None and attention_mask.shape != (b, past + s):
            raise ValueError(
                f"attention_mask must be (B, cached + S) = {(b, past + s)}, got {tuple(attention_mask.shape)}"
            )
        if positions is None:
            if attention_mask is not None:
                positions = positions_from_mask(attention_mask, s)
            else:
                positions = torch.arange(past, past + s, device=input_ids.device)

        # Masks: explicit (paged engine), from padding, or plain causal handled by attention().
        masks: AttnMasks | None = attn_masks
        causal = False
        if masks is None:
            if attention_mask is not None:
                masks = build_attn_masks(attention_mask, s, self.windows)
            elif any(w is not None for w in self.windows):
                ones = torch.ones(b, past + s, dtype=torch.bool, device=input_ids.device)
                masks = build_attn_masks(ones, s, self.windows)
            else:
                causal = s > 1  # one query against the cache sees every key: no mask needed

        x = self.embed_tokens(input_ids)  # (B, S, d)
        layers: list[Qwen2DecoderLayer] = list(self.layers)  # type: ignore[arg-type]
        if all(layer._hook_free() for layer in layers) and not (
            _global_forward_hooks or _global_forward_pre_hooks
        ):
            # Fast path: positions and masks are checked here once, RoPE tables are computed
            # once for all layers, and the layers skip their per-call re-validation.
            if attn_masks is not None:
                self._check_attn_masks(attn_masks, b, s)
            if not isinstance(positions, torch.Tensor) or positions.ndim not in (1, 2):
                raise ValueError(
                    f"positions must be a (S,) or (B, S) tensor, got {getattr(positions, 'shape', positions)!r}"
                )
            if positions.shape[-1] != s or (
                positions.ndim == 2 and positions.shape[0] not in (1, b)
            ):
                raise ValueError(
                    f"positions must be (S,) or (B, S) with B={b}, S={s}, got {tuple(positions.shape)}"
                )
            cos, sin = self.rope._fast_tables(positions)  # (S, 1, D) or (B, S, 1, D)
            plan = self._inference_plan(layers)
            x = self._run_layers(plan, layers, x, cos, sin, masks, caches, causal)
        else:
            for i, layer in enumerate(layers):
                mask = None if masks is None else masks[self.windows[i]]
                x = layer(x, positions, mask, None if caches is None else caches[i], causal)
        if logits_to_keep:
            x = x[:, -logits_to_keep:]
        x = self.norm(x)
        if return_hidden:
            return x
        return self.lm_head_logits(x)

    def _inference_plan(self, layers: Sequence[Qwen2DecoderLayer]) -> list[_LayerPlan] | None:
        """The layers' weights in the layout :meth:`_run_layers` uses, or None where it does not
        apply: a projection that is not a hook-free ``nn.Linear`` (quantized, LoRA), a block
        of another type, or parameters that need gradients.

        The plan is cached and rebuilt whenever a source tensor changes storage or version
        counter (``load_state_dict``, ``nn.init``, an optimiser step, ``.to()``). Writes
        through ``param.data`` bypass the version counter: call :meth:`clear_inference_caches`
        after such edits. Costs one extra copy of the fused q/k/v and gate/up weights in memory.
        """
        blocks: list[tuple[RMSNorm, RMSNorm, list[nn.Linear]]] = []
        sources: list[torch.Tensor | None] = []  # every source tensor, None for no bias
        for layer in layers:
            lm = layer._modules
            attn, mlp = lm["self_attn"], lm["mlp"]
            norm1, norm2 = lm["input_layernorm"], lm["post_attention_layernorm"]
            if not (
                type(attn) is MultiHeadAttention
                and type(mlp) is SwiGLU
                and type(norm1) is RMSNorm
                and type(norm2) is RMSNorm
            ):
                return None
            am, mm = attn._modules, mlp._modules
            names = (
                (am, "q_proj"),
                (am, "k_proj"),
                (am, "v_proj"),
                (am, "o_proj"),
                (mm, "gate_proj"),
                (mm, "up_proj"),
                (mm, "down_proj"),
            )
            linears: list[nn.Linear] = []
            for mods, name in names:
                lin = mods[name]
                if not _plain_linear(lin):
                    return None
                assert isinstance(lin, nn.Linear)
                linears.append(lin)
                p = lin._parameters  # direct lookups: nn.Module.__getattr__ is slow here
                sources += [p["weight"], p["bias"]]
            sources += [norm1._parameters["weight"], norm2._parameters["weight"]]
            blocks.append((norm1, norm2, linears))
        tensors = [t for t in sources if t is not None]
        if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
            return None
        key = tuple(
            [None if t is None else t.data_ptr() for t in sources] + [t._version for t in tensors]
        )
        if self._plan is not None and self._plan[0] == key:
            return self._plan[1]
        plans: list[_LayerPlan] = []
        with torch.no_grad():
            for norm1, norm2, (q, k, v, o, gate, up, down) in blocks:
                plans.append(
                    _LayerPlan(
                        norm1=norm1.weight.detach(),
                        qkv=_right_operand([q.weight, k.weight, v.weight]),
                        qkv_bias=_cat_bias([q, k, v]),
                        o=_right_operand([o.weight]),
                        o_bias=_detached(o.bias),
                        norm2=norm2.weight.detach(),
                        gate_up=_right_operand([gate.weight, up.weight]),
                        gate_up_bias=_cat_bias([gate, up]),
                        down=_right_operand([down.weight]),
                        down_bias=_detached(down.bias),
                    )
                )
        self._plan = (key, plans, tensors)
        return plans

    def _run_layers(
        self,
        plan: Sequence[_LayerPlan] | None,
        layers: Sequence[Qwen2DecoderLayer],
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        masks: AttnMasks | None,
        caches: Sequence[KVCache] | None,
        causal: bool,
    ) -> torch.Tensor:
        """The decoder layers on arguments :meth:`forward` has checked, with RoPE tables
        shared by all layers and no module-call machinery (the caller checks
        :meth:`Qwen2DecoderLayer._hook_free` first).

        With a ``plan`` (:meth:`_inference_plan`), the layers run on its weights: the same
        values as the modules in fewer and faster kernels (one matmul for q/k/v, one for
        gate/up, residual adds inside the output projections' matmuls). Without one (e.g.
        quantized or LoRA projections, or training), on the blocks' unchecked forms.

        x: (B, S, d) -> (B, S, d).
        """
        b, s, d = x.shape
        assert self.config.head_dim is not None
        h, hd = self.config.num_attention_heads, self.config.head_dim
        rope = self.rope
        x2 = x.reshape(b * s, d)  # (N, d)
        for i, layer in enumerate(layers):
            lm = layer._modules
            attn: MultiHeadAttention = lm["self_attn"]  # type: ignore[assignment]
            mlp: SwiGLU = lm["mlp"]  # type: ignore[assignment]
            norm1: RMSNorm = lm["input_layernorm"]  # type: ignore[assignment]
            norm2: RMSNorm = lm["post_attention_layernorm"]  # type: ignore[assignment]
            mask = None if masks is None else masks[self.windows[i]]
            cache = None if caches is None else caches[i]
            if plan is None:
                x = x2.view(b, s, d)
                x = x + attn._attend(norm1._norm(x), cos, sin, mask, cache, causal)
                x2 = (x + mlp._mlp(norm2._norm(x))).view(b * s, d)
                continue
            lp = plan[i]
            a = _matmul(_rms_norm(norm1, x2, lp.norm1), lp.qkv, lp.qkv_bias)  # (N, (H+2H_kv)D)
            q, k, v = split_qkv(a.view(b, s, -1, hd), h, rope, cos, sin)
            a = cached_attention(q, k, v, cache, mask, causal, attn.window, attn.backend)
            a = a.view(b * s, h * hd)  # (N, H D)
            x2 = _residual_matmul(x2, a, lp.o, lp.o_bias)  # x + o_proj(a)
            gu = _matmul(_rms_norm(norm2, x2, lp.norm2), lp.gate_up, lp.gate_up_bias)  # (N, 2I)
            gate, up = gu.chunk(2, dim=-1)  # (N, I) each
            a = F.silu(gate).mul_(up)  # (N, I)
            x2 = _residual_matmul(x2, a, lp.down, lp.down_bias)  # x + down_proj(a)
        return x2.view(b, s, d)

    def _check_caches(self, caches: Sequence[KVCache], b: int, s: int) -> None:
        """What ``MultiHeadAttention`` checks per call, done once for every layer's cache."""
        c = self.config
        want = (b, c.num_key_value_heads, c.head_dim)
        dtype = self.dtype
        for i, cache in enumerate(caches):
            if not isinstance(cache, KVCache):
                raise TypeError(f"caches[{i}] must be a KVCache, got {type(cache).__name__}")
            got = (cache.batch_size, cache.n_kv_heads, cache.head_dim)
            if got != want:
                raise ValueError(f"caches[{i}] must have (B, H_kv, D) = {want}, got {got}")
            if cache.dtype != dtype:
                raise TypeError(
                    f"caches[{i}] dtype must equal the model's {dtype}, got {cache.dtype}"
                )
            if cache.size + s > cache.max_seq_len:
                raise ValueError(
                    f"KVCache overflow in caches[{i}]: max_seq_len is {cache.max_seq_len}, "
                    f"got {cache.size} stored + {s} new"
                )

    def _check_attn_masks(self, attn_masks: AttnMasks, b: int, s: int) -> None:
        """Check caller-given masks once (bool or additive, broadcastable to (B, H, S, T))."""
        for w in dict.fromkeys(self.windows):
            if w not in attn_masks:
                raise ValueError(f"attn_masks has no mask for window {w!r}")
            m = attn_masks[w]
            if not isinstance(m, torch.Tensor):
                raise TypeError(f"attn_masks[{w!r}] must be a tensor, got {type(m).__name__}")
            check_attn_mask(m, b, self.config.num_attention_heads, s, m.shape[-1] if m.ndim else 1)

    def lm_head_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits from final-norm hidden states: (..., d) -> (..., V) (tied or untied head).

        Without autograd, the layout follows the number of rows N (measured on CPU with
        ``seedbed-genbench``, where ``F.linear`` on the (V, d) weight is slow for few rows):
        one row (a decode step at batch 1) runs against a contiguous (d, V) copy of the head,
        rebuilt whenever the weight changes (tracked by its storage, version counter, dtype
        and device); 2 to 8 rows (batched decoding, last-position prefill) as
        ``(W @ hidden^T)^T``; more rows through ``F.linear``.
        """
        w = self.embed_tokens.weight if self.lm_head is None else self.lm_head.weight
        if torch.is_grad_enabled() and w.requires_grad:
            return F.linear(hidden, w)
        rows = hidden.numel() // hidden.shape[-1] if hidden.shape[-1] else 0
        if rows == 1:
            key = (w.data_ptr(), w._version, w.dtype, w.device, tuple(w.shape))
            head = self._head_t
            if head is None or self._head_t_key != key:
                head = self._head_t = w.detach().t().contiguous()  # (d, V)
                self._head_t_key = key
            return hidden @ head
        if 2 <= rows <= 8:
            flat = hidden.reshape(rows, hidden.shape[-1])  # (N, d)
            logits = torch.mm(w.detach(), flat.t()).t().contiguous()  # (N, V)
            return logits.view(*hidden.shape[:-1], w.shape[0])
        return F.linear(hidden, w)

    @torch.no_grad()
    def generate(self, prompts: Any, **kwargs: Any) -> Any:
        """See :func:`seedbed.sequence_models.generation.generate.generate`."""
        from seedbed.sequence_models.generation.generate import generate

        return generate(self, prompts, **kwargs)
