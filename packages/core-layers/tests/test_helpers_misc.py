"""init, device, gradient checkpointing and memory-measurement helpers."""

import math

import pytest
import torch
from torch import nn

from seedbed.core_layers import (
    RMSNorm,
    SwiGLU,
    checkpointed,
    get_device,
    get_device_info,
    init_residual_scaling,
    init_weights,
    peak_memory_bytes,
)


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 32)
        self.norm = RMSNorm(32)
        self.mlp = SwiGLU(32, 64, bias=True)
        self.o_proj = nn.Linear(32, 32)


def test_init_weights_methods():
    torch.manual_seed(0)
    b = Block()
    with torch.no_grad():
        b.norm.weight.fill_(3.0)
    init_weights(b, method="normal", std=0.02)
    assert b.mlp.up_proj.weight.std().item() == pytest.approx(0.02, rel=0.15)
    assert torch.equal(b.mlp.up_proj.bias, torch.zeros(64))
    assert torch.equal(b.norm.weight, torch.ones(32))
    init_weights(b, method="truncated_normal", std=0.05)
    assert b.mlp.gate_proj.weight.abs().max() <= 0.1
    init_weights(b, method="xavier")
    bound = math.sqrt(6 / (32 + 64))
    assert b.mlp.gate_proj.weight.abs().max() <= bound
    with pytest.raises(ValueError, match=r"method must be one of .*got 'kaiming'"):
        init_weights(b, method="kaiming")


def test_init_residual_scaling():
    b = Block()
    before = (
        b.o_proj.weight.detach().clone(),
        b.mlp.down_proj.weight.detach().clone(),
        b.mlp.up_proj.weight.detach().clone(),
    )
    version = b.o_proj.weight._version
    names = init_residual_scaling(b, n_layers=8)
    assert b.o_proj.weight._version > version  # caches keyed on the version see the write
    assert sorted(names) == ["mlp.down_proj.weight", "o_proj.weight"]
    torch.testing.assert_close(b.o_proj.weight, before[0] / 4)
    torch.testing.assert_close(b.mlp.down_proj.weight, before[1] / 4)
    assert torch.equal(b.mlp.up_proj.weight, before[2])
    with pytest.raises(ValueError, match=r"found no submodule named one of"):
        init_residual_scaling(nn.Linear(2, 2), 4)


def test_checkpointed_matches_plain_and_recomputes():
    calls = {"n": 0}

    class Counting(SwiGLU):
        def forward(self, x):
            calls["n"] += 1
            return super().forward(x)

    torch.manual_seed(0)
    inner = Counting(16, 32)
    wrapped = checkpointed(inner)
    x = torch.randn(4, 16, requires_grad=True)
    wrapped(x).sum().backward()
    g_ckpt = x.grad.clone()
    assert calls["n"] == 2  # forward + recomputation in backward
    x.grad = None
    inner(x).sum().backward()
    torch.testing.assert_close(g_ckpt, x.grad)
    wrapped.eval()
    calls["n"] = 0
    wrapped(x)
    assert calls["n"] == 1
    with pytest.raises(TypeError, match=r"expects an nn.Module, got function"):
        checkpointed(lambda x: x)


def test_get_device_and_info():
    dev = get_device()
    assert isinstance(dev, torch.device)
    assert get_device("cpu") == torch.device("cpu")
    info = get_device_info("cpu")
    assert info["device"] == "cpu"
    assert isinstance(info["flash2"], bool)
    assert info["torch"] == torch.__version__
    with pytest.raises(ValueError, match=r"device must be like"):
        get_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"CUDA is not available"):
            get_device("cuda")


def test_peak_memory_counts_temporaries_and_results():
    n = 256 * 1024  # floats: 1 MiB per tensor

    def two_temporaries():
        a = torch.ones(n)
        b = torch.ones(n)
        return (a + b).sum()  # peak: a, b and a + b alive at once

    peak = peak_memory_bytes(two_temporaries)
    assert 3 * 4 * n <= peak < 3 * 4 * n + 64 * 1024
    assert peak_memory_bytes(lambda: None) == 0
    kept = []
    assert peak_memory_bytes(lambda: kept.append(torch.ones(n))) == 4 * n
    kept.clear()  # freed outside the profiler: must not shift later measurements
    assert peak_memory_bytes(lambda: torch.ones(n)) == 4 * n
    with pytest.raises(ValueError, match=r"supports 'cpu' and CUDA"):
        peak_memory_bytes(lambda: None, device="meta")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_peak_memory_on_cuda_and_device_info():
    n = 1024 * 1024
    peak = peak_memory_bytes(lambda: torch.ones(n, device="cuda") + 1, device="cuda")
    assert 2 * 4 * n <= peak < 2 * 4 * n + 4 * 2**20
    info = get_device_info("cuda")
    assert info["device"] == "cuda"
    assert "capability" in info
    assert get_device() == torch.device("cuda")
