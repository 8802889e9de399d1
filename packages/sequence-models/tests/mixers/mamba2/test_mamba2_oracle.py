"""``Mamba2Block`` against HF transformers' ``Mamba2Mixer`` given the same weights (a tiny
random config built locally; HF's pure-PyTorch SSD path)."""

from __future__ import annotations

import inspect

import pytest
import torch

from seedbed.sequence_models import Mamba2Block

pytestmark = pytest.mark.oracle


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("mode", ["chunk", "recurrent", "naive"])
@pytest.mark.parametrize("n_groups", [1, 2])
def test_mamba2_block_matches_hf_mamba2_mixer(mode: str, n_groups: int) -> None:
    transformers = pytest.importorskip("transformers")
    from transformers.models.mamba2.modeling_mamba2 import Mamba2Mixer, MambaRMSNormGated

    if n_groups > 1 and "group_size" not in inspect.signature(MambaRMSNormGated).parameters:
        # transformers before the group-wise gated RMSNorm fix (present in 5.23, absent in
        # 5.20) normalises over the whole inner width, unlike mamba_ssm's reference
        pytest.skip("this transformers' Mamba2 gated RMSNorm ignores n_groups")
    torch.manual_seed(0)
    cfg = transformers.Mamba2Config(
        hidden_size=32, state_size=8, conv_kernel=4, expand=2, head_dim=16, n_groups=n_groups,
        num_heads=4, chunk_size=16, num_hidden_layers=1, use_conv_bias=True, use_bias=False,
        layer_norm_epsilon=1e-5,
    )  # fmt: skip
    hf = Mamba2Mixer(cfg, layer_idx=0).eval()
    with torch.no_grad():
        hf.A_log.add_(0.3 * torch.randn_like(hf.A_log))
        hf.D.add_(0.3 * torch.randn_like(hf.D))
    ours = Mamba2Block(
        32, d_state=8, d_conv=4, expand=2, head_dim=16, n_groups=n_groups, chunk_size=10, mode=mode
    )
    ours.load_state_dict(hf.state_dict())
    x = torch.randn(2, 63, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert rel_err(ours.eval()(x), hf(x)) < 1e-5
