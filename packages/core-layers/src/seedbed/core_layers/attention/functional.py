"""``attention()``: one entry point, the fastest kernel present that can serve the call.

Backends, tried in this order by ``backend="auto"``:

1. ``"flash3"``: FlashAttention-3 (``flash_attn_interface``, Hopper GPUs);
2. ``"flash2"``: FlashAttention-2 (``flash_attn``);
3. ``"sdpa"``: ``torch.nn.functional.scaled_dot_product_attention`` (any device);
4. ``"math"``: the explicit reference in :mod:`seedbed.core_layers.attention.math`.

A backend serves a call only if it computes exactly the requested function: the flash kernels
need CUDA fp16/bf16 tensors, equal q/v head dims and no ``attn_mask`` (FlashAttention-3 also
no dropout); SDPA cannot apply ``softcap``. ``_HAS_FLASH3`` / ``_HAS_FLASH2`` record which
kernels imported, and :func:`last_backend` names the backend that served the latest call in
this thread. Asking for a specific backend that cannot serve the call raises ValueError
saying why, rather than quietly running another one.

Layout at the boundary is (B, S, H, D); masking conventions are in
:mod:`seedbed.core_layers.attention.masks`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from seedbed.core_layers._checks import check_positive_int, check_tensor
from seedbed.core_layers.attention.masks import band_mask, check_attn_mask, merge_masks
from seedbed.core_layers.attention.math import math_attention

_flash3_func: Callable[..., Any] | None = None
_flash2_func: Callable[..., Any] | None = None
try:  # FlashAttention-3 (Hopper); a CUDA-only build, absent on CPU machines
    import flash_attn_interface as _fa3

    _flash3_func = _fa3.flash_attn_func
except Exception:  # ImportError, or a broken CUDA extension raising at import
    pass
try:  # FlashAttention-2
    import flash_attn as _fa2

    _flash2_func = _fa2.flash_attn_func
except Exception:
    pass
_HAS_FLASH3 = _flash3_func is not None
_HAS_FLASH2 = _flash2_func is not None

__all__ = [
    "BACKENDS",
    "_HAS_FLASH2",
    "_HAS_FLASH3",
    "attention",
    "check_qkv",
    "last_backend",
]

BACKENDS = ("auto", "flash3", "flash2", "sdpa", "math")
_state = threading.local()


def last_backend() -> str:
    """Name of the backend that served the most recent :func:`attention` call in this thread
    (``"flash3"``, ``"flash2"``, ``"sdpa"`` or ``"math"``), or ``"none"`` before any call."""
    return getattr(_state, "backend", "none")


def check_qkv(q: object, k: object, v: object) -> tuple[int, int, int, int, int, int]:
    """Validate (B, S_q, H, D) queries and (B, S_k, H_kv, D) keys/values.

    Returns:
        ``(B, S_q, S_k, H, H_kv, D)``.
    """
    qt = check_tensor(q, "q", ndim=4, floating=False)
    kt = check_tensor(k, "k", ndim=4, floating=False)
    vt = check_tensor(v, "v", ndim=4, floating=False)
    for name, t in (("q", qt), ("k", kt), ("v", vt)):
        if not t.is_floating_point():
            raise TypeError(f"{name} must have a floating-point dtype, got {t.dtype}")
    if not qt.dtype == kt.dtype == vt.dtype:
        raise TypeError(f"q, k, v must share one dtype, got {qt.dtype}, {kt.dtype}, {vt.dtype}")
    if not qt.device == kt.device == vt.device:
        raise ValueError(
            f"q, k, v must be on one device, got {qt.device}, {kt.device}, {vt.device}"
        )
    b, s_q, h, d = qt.shape
    if kt.shape[0] != b or vt.shape[0] != b:
        raise ValueError(
            f"batch sizes differ: q has B={b}, k has B={kt.shape[0]}, v has B={vt.shape[0]}"
        )
    if kt.shape[:3] != vt.shape[:3]:
        raise ValueError(
            f"k and v must agree on (B, S_k, H_kv), got k {tuple(kt.shape)} and v {tuple(vt.shape)}"
        )
    if kt.shape[3] != d:
        raise ValueError(f"q and k head dims differ: q has D={d}, k has D={kt.shape[3]}")
    s_k, h_kv = kt.shape[1], kt.shape[2]
    if s_q == 0 or s_k == 0 or h == 0 or h_kv == 0 or d == 0:
        raise ValueError(
            f"q and k need non-empty sequence, head and head-dim sizes, got q {tuple(qt.shape)}, k {tuple(kt.shape)}"
        )
    if h % h_kv != 0:
        raise ValueError(
            f"query heads must be a multiple of KV heads (GQA), got H={h}, H_kv={h_kv}"
        )
    return b, s_q, s_k, h, h_kv, d


def _check_options(
    causal: object,
    window: object,
    softcap: object,
    scale: object,
    dropout_p: object,
) -> None:
    if not isinstance(causal, bool):
        raise TypeError(f"causal must be a bool, got {type(causal).__name__}")
    if window is not None:
        check_positive_int(window, "window")
    for name, val in (("softcap", softcap), ("scale", scale)):
        if val is None:
            continue
        if isinstance(val, bool) or not isinstance(val, (int, float)):
            raise TypeError(f"{name} must be a number or None, got {type(val).__name__}")
        if not (math.isfinite(val) and val > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {val}")
    if isinstance(dropout_p, bool) or not isinstance(dropout_p, (int, float)):
        raise TypeError(f"dropout_p must be a number, got {type(dropout_p).__name__}")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p}")


def _flash_refusal(
    which: str,
    q: torch.Tensor,
    v: torch.Tensor,
    attn_mask: torch.Tensor | None,
    dropout_p: float,
) -> str | None:
    """Why FlashAttention ``which`` cannot serve this call, or None if it can."""
    if which == "flash3" and not _HAS_FLASH3:
        return "flash_attn_interface (FlashAttention-3) is not installed"
    if which == "flash2" and not _HAS_FLASH2:
        return "flash_attn (FlashAttention-2) is not installed"
    if q.device.type != "cuda":
        return f"it needs CUDA tensors, got device {q.device}"
    if q.dtype not in (torch.float16, torch.bfloat16):
        return f"it needs float16 or bfloat16, got {q.dtype}"
    if attn_mask is not None:
        return "it takes no attn_mask"
    if v.shape[-1] != q.shape[-1] or q.shape[-1] > 256:
        return f"it needs equal q/v head dims <= 256, got {q.shape[-1]} and {v.shape[-1]}"
    if which == "flash3":
        if dropout_p > 0.0:
            return "FlashAttention-3 has no dropout"
        if torch.cuda.get_device_capability(q.device)[0] != 9:
            return "FlashAttention-3 needs a Hopper (sm90) GPU"
    return None


def _refusal(
    backend: str,
    q: torch.Tensor,
    v: torch.Tensor,
    attn_mask: torch.Tensor | None,
    softcap: float | None,
    dropout_p: float,
) -> str | None:
    if backend in ("flash3", "flash2"):
        return _flash_refusal(backend, q, v, attn_mask, dropout_p)
    if backend == "sdpa" and softcap is not None:
        return "torch SDPA cannot apply softcap"
    return None


def _run_flash(
    which: str,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool,
    window: int | None,
    softcap: float | None,
    scale: float,
    dropout_p: float,
) -> torch.Tensor:
    # FlashAttention takes (B, S, H, D), GQA and bottom-right causal alignment natively.
    # window_size=(left, right): left = w - 1 keys of look-back, right = -1 (unbounded).
    window_size = (-1, -1) if window is None else (window - 1, -1)
    kwargs: dict[str, Any] = {
        "softmax_scale": scale,
        "causal": causal,
        "window_size": window_size,
        "softcap": 0.0 if softcap is None else float(softcap),
    }
    if which == "flash3":
        assert _flash3_func is not None
        out = _flash3_func(q, k, v, **kwargs)
    else:
        assert _flash2_func is not None
        out = _flash2_func(q, k, v, dropout_p=dropout_p, **kwargs)
    return out[0] if isinstance(out, tuple) else out  # some versions also return the LSE


def _run_sdpa(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool,
    attn_mask: torch.Tensor | None,
    window: int | None,
    scale: float,
    dropout_p: float,
) -> torch.Tensor:
    s_q, s_k, h, h_kv = q.shape[1], k.shape[1], q.shape[2], k.shape[2]
    qh, kh, vh = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H(_kv), S, D)
    if attn_mask is None and window is None and not causal:  # e.g. a decoding step: no mask
        out = F.scaled_dot_product_attention(
            qh, kh, vh, dropout_p=dropout_p, scale=scale, enable_gqa=h != h_kv
        )  # (B, H, S_q, D_v)
        return out.transpose(1, 2)  # (B, S_q, H, D_v)
    # SDPA's is_causal is top-left aligned: use it only when that coincides with ours.
    plain_causal = causal and s_q == s_k and window is None and attn_mask is None
    mask = None
    if not plain_causal:
        band = band_mask(
            0, s_q, 0, s_k, shift=s_k - s_q, causal=causal, window=window, device=q.device
        )
        mask = merge_masks(attn_mask, band, q.dtype)
    # Queries that see no key: give them a harmless row and zero their output afterwards, so
    # that no kernel (some CUDA ones return NaN there) can produce NaN values or gradients.
    dead = None
    if mask is not None:
        blocked = ~mask if mask.dtype == torch.bool else torch.isneginf(mask)
        dead = blocked.all(dim=-1, keepdim=True)  # (..., S_q, 1)
        if bool(dead.any()):
            mask = mask | dead if mask.dtype == torch.bool else mask.masked_fill(dead, 0.0)
        else:
            dead = None
    gqa = h != h_kv
    if gqa and mask is not None:
        # enable_gqa plus a mask falls back to slow kernels on some devices; expand instead.
        rep = h // h_kv
        kh = kh.repeat_interleave(rep, dim=1)
        vh = vh.repeat_interleave(rep, dim=1)
        gqa = False
    out = F.scaled_dot_product_attention(
        qh,
        kh,
        vh,
        attn_mask=mask,
        dropout_p=dropout_p,
        is_causal=plain_causal,
        scale=scale,
        enable_gqa=gqa,
    )  # (B, H, S_q, D_v)
    if dead is not None:
        out = out.masked_fill(dead, 0.0)
    return out.transpose(1, 2)  # (B, S_q, H, D_v)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = False,
    attn_mask: torch.Tensor | None = None,
    window: int | None = None,
    softcap: float | None = None,
    scale: float | None = None,
    dropout_p: float = 0.0,
    backend: str = "auto",
) -> torch.Tensor:
    """Scaled dot-product attention with GQA, served by the best backend available.

    Args:
        q: (B, S_q, H, D) queries.
        k: (B, S_k, H_kv, D) keys, H % H_kv == 0 (grouped-query attention).
        v: (B, S_k, H_kv, D_v) values.
        causal: query i sees keys j <= i + S_k - S_q (bottom-right aligned).
        attn_mask: bool (True = attend) or floating additive mask, broadcastable to
            (B, H, S_q, S_k); e.g. a key-padding mask ``pad[:, None, None, :]``.
        window: look-back limit w: key j visible only if (i + S_k - S_q) - j < w.
        softcap: tanh soft-capping of the scores (Gemma-2): ``c * tanh(s / c)``.
        scale: score scale, default ``1 / sqrt(D)``.
        dropout_p: dropout on the attention probabilities (pass 0.0 at eval time).
        backend: one of ``"auto"``, ``"flash3"``, ``"flash2"``, ``"sdpa"``, ``"math"``.

    Returns:
        (B, S_q, H, D_v), dtype of q. Queries that see no key give zeros.

    Raises:
        TypeError, ValueError: on invalid inputs (message names expected and given), or when
            the requested backend cannot serve this call.
    """
    b, s_q, s_k, h, _h_kv, d = check_qkv(q, k, v)
    _check_options(causal, window, softcap, scale, dropout_p)
    if attn_mask is not None:
        attn_mask = check_attn_mask(attn_mask, b, h, s_q, s_k)
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    scale_f = float(scale) if scale is not None else d**-0.5
    softcap_f = float(softcap) if softcap is not None else None
    return _dispatch(
        q, k, v, causal, attn_mask, window, softcap_f, scale_f, float(dropout_p), backend
    )


def _attention_unchecked(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool,
    attn_mask: torch.Tensor | None,
    window: int | None,
    backend: str,
) -> torch.Tensor:
    """:func:`attention` (default scale, no softcap, no dropout) without re-validating its
    arguments, for modules that built q/k/v themselves from checked inputs (decode hot path)."""
    return _dispatch(q, k, v, causal, attn_mask, window, None, q.shape[-1] ** -0.5, 0.0, backend)


def _dispatch(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool,
    attn_mask: torch.Tensor | None,
    window: int | None,
    softcap_f: float | None,
    scale_f: float,
    dropout_f: float,
    backend: str,
) -> torch.Tensor:
    """Pick the backend for validated arguments and run it (see :func:`attention`)."""
    s_q = q.shape[1]
    if causal and s_q == 1 and window is None:
        causal = False  # one query aligned at the last key sees every key (decoding step)

    if backend == "auto":
        chosen = next(
            name
            for name in ("flash3", "flash2", "sdpa", "math")
            if _refusal(name, q, v, attn_mask, softcap_f, dropout_f) is None
        )
    else:
        why = _refusal(backend, q, v, attn_mask, softcap_f, dropout_f)
        if why is not None:
            raise ValueError(f"backend={backend!r} cannot serve this call: {why}")
        chosen = backend

    if chosen in ("flash3", "flash2"):
        out = _run_flash(chosen, q, k, v, causal, window, softcap_f, scale_f, dropout_f)
    elif chosen == "sdpa":
        out = _run_sdpa(q, k, v, causal, attn_mask, window, scale_f, dropout_f)
    else:
        out = math_attention(
            q,
            k,
            v,
            causal=causal,
            attn_mask=attn_mask,
            window=window,
            softcap=softcap_f,
            scale=scale_f,
            dropout_p=dropout_f,
        )
    _state.backend = chosen
    return out
