"""Two DDP processes (gloo over loopback) give the loss curve of one process with the same
global batch. The default test starts the two ranks itself with the environment ``torchrun``
would give them (RANK, WORLD_SIZE, MASTER_ADDR, ...); the ``slow`` one goes through the real
``torch.distributed.run`` launcher."""

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seedbed.core_layers.training import list_checkpoints

WORKER = Path(__file__).with_name("ddp_worker.py")
DIST_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DIST_VARS}
    env.update(OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo", CUDA_VISIBLE_DEVICES="", **extra)
    return env


def _load_worker():
    spec = importlib.util.spec_from_file_location("ddp_worker", WORKER)
    assert spec is not None
    assert spec.loader is not None
    worker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(worker)
    return worker


def _single_process(out: Path, ckpt: Path) -> None:
    worker = _load_worker()
    assert not any(v in os.environ for v in ("RANK", "WORLD_SIZE"))
    worker.main(str(out), str(ckpt))


def _launch_ranks(out: Path, ckpt: Path) -> None:
    port = str(_free_port())
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(out), str(ckpt)],
            env=_env(
                RANK=str(r),
                LOCAL_RANK=str(r),
                WORLD_SIZE="2",
                LOCAL_WORLD_SIZE="2",
                MASTER_ADDR="127.0.0.1",
                MASTER_PORT=port,
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in range(2)
    ]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(log[-3000:] for log in logs)


def _launch_torchrun(out: Path, ckpt: Path) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1"]
    cmd += [
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        str(WORKER),
        str(out),
        str(ckpt),
    ]
    proc = subprocess.run(cmd, env=_env(), timeout=300, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.parametrize(
    "launcher",
    [_launch_ranks, pytest.param(_launch_torchrun, marks=pytest.mark.slow)],
    ids=["env", "torchrun"],
)
def test_two_process_ddp_matches_one_process(tmp_path, launcher):
    single, double = tmp_path / "single.json", tmp_path / "ddp.json"
    _single_process(single, tmp_path / "c1")
    launcher(double, tmp_path / "c2")
    one, two = json.loads(single.read_text()), json.loads(double.read_text())
    assert one["world_size"] == 1
    assert two["world_size"] == 2
    assert len(one["losses"]) == len(two["losses"]) == 6
    torch.testing.assert_close(
        torch.tensor(two["losses"]), torch.tensor(one["losses"]), rtol=1e-6, atol=1e-6
    )
    torch.testing.assert_close(
        torch.tensor(two["params"]), torch.tensor(one["params"]), rtol=1e-6, atol=1e-6
    )
    torch.manual_seed(0)
    init = torch.cat([p.detach().flatten() for p in _load_worker().TinyNet().parameters()])
    assert (torch.tensor(one["params"]) - init).abs().max() > 1e-3  # it trained
    # rank 0 wrote complete checkpoints holding both ranks' RNG states
    ckpts = list_checkpoints(tmp_path / "c2")
    assert [p.name for p in ckpts] == ["step_00000003", "step_00000006"]
    state = torch.load(ckpts[-1] / "trainer_state.pt", weights_only=True)
    assert state["world_size"] == 2
    assert len(state["rng"]) == 2
