"""Oracle: MoELayer (switch router, top-2) == HF transformers' Mixtral sparse MoE block."""

from __future__ import annotations

import pytest
import torch

from seedbed.core_layers.moe import MoELayer

pytestmark = pytest.mark.oracle


@pytest.mark.parametrize("dispatch", ["auto", "batched"])
@pytest.mark.parametrize(
    ("d", "f", "e"), [(32, 64, 8), (48, 96, 4)], ids=["D32-F64-E8", "D48-F96-E4"]
)
def test_matches_hf_mixtral_sparse_moe_block(
    dispatch: str, d: int, f: int, e: int, tmp_path
) -> None:
    modeling = pytest.importorskip("transformers.models.mixtral.modeling_mixtral")
    from transformers import MixtralConfig

    config = MixtralConfig(
        hidden_size=d,
        intermediate_size=f,
        num_local_experts=e,
        num_experts_per_tok=2,
        router_jitter_noise=0.0,
    )
    torch.manual_seed(0)
    hf = modeling.MixtralSparseMoeBlock(config).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0, 0.2)
    ours = MoELayer(d, f, e, top_k=2, dispatch=dispatch).eval()
    # HF's parameter names and layouts load as they are (through a saved file, as a user would)
    path = tmp_path / "mixtral_block.pt"
    torch.save(
        {
            "router.gate.weight": hf.gate.weight.detach(),
            "gate_up_proj": hf.experts.gate_up_proj.detach(),
            "down_proj": hf.experts.down_proj.detach(),
        },
        path,
    )
    ours.load_state_dict(torch.load(path, weights_only=True))
    x = torch.randn(3, 11, d)
    with torch.no_grad():
        ref = hf(x.clone())
        ref = ref[0] if isinstance(ref, tuple) else ref
        y, _ = ours(x)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
