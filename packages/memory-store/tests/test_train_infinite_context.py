from __future__ import annotations

from pathlib import Path

import pytest

from seedbed.memory_store.train_infinite_context import main, parse_args, run

TINY = [
    "--steps", "3", "--batch-size", "2", "--chunk-size", "16", "--d-model", "32", "--n-layers", "1",
    "--n-heads", "2", "--top-k", "4", "--hot-capacity", "16", "--latent-dim", "8", "--eval-chunks", "2",
    "--no-progress", "--threads", "1",
]  # fmt: skip


def test_cli_ablation_checkpoint_resume_and_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "d.txt"
    data.write_bytes(b"def f(x):\n    return x + 1\n" * 400)
    ck = tmp_path / "ck"
    assert (
        main(
            [
                "--data",
                str(data),
                *TINY,
                "--ablate-memory",
                "--checkpoint-dir",
                str(ck),
                "--plot",
                str(tmp_path / "l.png"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "perplexity with memory:" in out
    assert "perplexity without memory:" in out
    assert "retrieval hit rate" in out
    assert "memory size" in out
    assert (tmp_path / "l.png").stat().st_size > 0
    assert (ck / "memory" / "step3" / "CURRENT").is_file()
    assert (ck / "no_memory" / "step3" / "CURRENT").is_file()
    assert main(["--data", str(data), *TINY, "--resume", str(ck / "memory" / "step3")]) == 0
    assert "resumed from" in capsys.readouterr().out


def test_cli_argument_errors() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--steps", "0"])
    with pytest.raises(SystemExit):
        parse_args(["--ablate-memory", "--resume", "x"])


@pytest.mark.slow
def test_memory_helps_on_the_default_corpus() -> None:
    """Equal parameters and steps: the held-out perplexity with memory is lower."""
    args = parse_args(["--no-progress", "--ablate-memory"])  # the CLI's defaults
    res = run(args)
    assert res["memory"]["perplexity"] < res["no_memory"]["perplexity"]
