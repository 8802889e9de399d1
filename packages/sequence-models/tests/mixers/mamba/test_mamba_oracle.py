"""``MambaBlock`` against HF transformers' ``MambaMixer`` and mambapy's ``MambaBlock``, given
the same weights (tiny random configs built locally)."""

from __future__ import annotations

import pytest
import torch

from seedbed.sequence_models import MambaBlock
from seedbed.sequence_models.mixers.mamba import fused_scan_available

pytestmark = pytest.mark.oracle


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.fixture(scope="module")
def hf_mixer():  # type: ignore[no-untyped-def]
    transformers = pytest.importorskip("transformers")
    from transformers.models.mamba.modeling_mamba import MambaMixer

    torch.manual_seed(0)
    cfg = transformers.MambaConfig(
        hidden_size=32, state_size=8, conv_kernel=4, expand=2, time_step_rank=4,
        num_hidden_layers=1, use_mambapy=False,
    )  # fmt: skip
    mixer = MambaMixer(cfg, layer_idx=0).eval()
    with torch.no_grad():
        mixer.A_log.add_(0.3 * torch.randn_like(mixer.A_log))
        mixer.D.add_(0.3 * torch.randn_like(mixer.D))
    return mixer


def _ours(state_dict, **kw):  # type: ignore[no-untyped-def]
    m = MambaBlock(32, d_state=8, d_conv=4, expand=2, dt_rank=4, chunk_size=16, **kw).eval()
    m.load_state_dict(state_dict)
    return m


@pytest.mark.parametrize("mode", ["fused", "chunk", "recurrent", "naive"])
@pytest.mark.parametrize("length", [63, 127], ids=lambda n: f"L{n}")
def test_mamba_block_matches_hf_mamba_mixer(hf_mixer, mode: str, length: int) -> None:  # type: ignore[no-untyped-def]
    if mode == "fused" and not fused_scan_available():
        pytest.skip("the fused CPU scan does not build here")
    ours = _ours(hf_mixer.state_dict(), mode=mode)
    x = torch.randn(2, length, 32, generator=torch.Generator().manual_seed(length))
    with torch.no_grad():
        assert rel_err(ours(x), hf_mixer(x)) < 1e-5


def test_mamba_block_matches_mambapy(hf_mixer) -> None:  # type: ignore[no-untyped-def]
    mp = pytest.importorskip("mambapy.mamba")
    cfg = mp.MambaConfig(
        d_model=32, n_layers=1, d_state=8, d_conv=4, expand_factor=2, dt_rank=4, pscan=True
    )
    block = mp.MambaBlock(cfg).eval()
    block.load_state_dict(hf_mixer.state_dict())
    ours = _ours(hf_mixer.state_dict())
    x = torch.randn(2, 63, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert rel_err(ours(x), block(x)) < 1e-5
        # mambapy's decoding step with its (h, inputs) cache against ours
        d_inner, k = 64, 4
        cache = (torch.zeros(2, d_inner, 8), torch.zeros(2, d_inner, k - 1))
        state, ref, got = None, [], []
        for t in range(20):
            y_ref, cache = block.step(x[:, t], cache)
            y, state = ours.step(x[:, t], state)
            ref.append(y_ref)
            got.append(y)
    assert rel_err(torch.stack(got, 1), torch.stack(ref, 1)) < 1e-5
