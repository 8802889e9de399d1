"""MQAR training loop and CLI, at toy sizes."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from seedbed.sequence_models.mqar import MQARConfig, MQARData, TrainConfig, train_mqar
from seedbed.sequence_models.mqar.cli import format_table, main, run_grid, zoology_reference


@pytest.fixture(scope="module")
def tiny_data() -> MQARData:
    return MQARData.build(
        MQARConfig(seq_len=16, num_kv_pairs=2, vocab_size=32, num_train=256, num_test=64)
    )


def test_train_reports_accuracy_and_throughput(tiny_data: MQARData) -> None:
    torch.set_num_threads(1)
    cfg = dict(mixer="rwkv", d_model=16, batch_size=32, lr=1e-2, progress=False)
    model, res = train_mqar(tiny_data, TrainConfig(epochs=4, **cfg))  # type: ignore[arg-type]
    assert res.steps == 32
    assert 0.0 <= res.test_accuracy <= 1.0
    assert res.train_tokens_per_s > 0
    assert res.num_parameters == model.num_parameters()
    _, first = train_mqar(tiny_data, TrainConfig(max_steps=1, **cfg))  # type: ignore[arg-type]
    assert res.final_train_loss < first.final_train_loss - 0.5  # it learns (3.45 -> 2.37)


def test_time_budget_and_max_steps(tiny_data: MQARData) -> None:
    _, res = train_mqar(
        tiny_data, TrainConfig(mixer="mamba", d_model=16, max_steps=3, progress=False)
    )
    assert res.steps == 3
    with pytest.raises(ValueError, match="time_budget_s"):
        TrainConfig(time_budget_s=0)


def test_warm_start_copies_weights_and_checks_architecture(tiny_data: MQARData) -> None:
    cfg = TrainConfig(mixer="attention", d_model=16, max_steps=2, progress=False, num_threads=1)
    before = torch.get_num_threads()
    first, _ = train_mqar(tiny_data, cfg)
    assert torch.get_num_threads() == before  # restored after the run
    frozen = TrainConfig(
        mixer="attention", d_model=16, max_steps=1, lr=1e-12, weight_decay=0.0, progress=False
    )
    second, res = train_mqar(tiny_data, frozen, init=(first, 16))
    assert res.init_from == "L16"
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=0, msg=name)
    with pytest.raises(ValueError, match="does not match"):
        train_mqar(
            tiny_data, TrainConfig(mixer="attention", d_model=32, progress=False), (first, 16)
        )
    with pytest.raises(TypeError, match="init"):
        train_mqar(tiny_data, cfg, init=first)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="init"):
        train_mqar(tiny_data, cfg, init=(first, "L16"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_threads"):
        TrainConfig(num_threads=0)


def test_absolute_positions_default_and_length_curriculum() -> None:
    """Attention gets learned absolute positions (Zoology) by default, other mixers none; a
    warm start to a longer L keeps the trained rows and initialises the new ones."""
    short, longer = (
        MQARData.build(
            MQARConfig(seq_len=n, num_kv_pairs=2, vocab_size=64, num_train=64, num_test=16)
        )
        for n in (16, 32)
    )
    kw = dict(d_model=16, max_steps=2, progress=False, num_threads=1)
    attn, _ = train_mqar(short, TrainConfig(mixer="attention", **kw))  # type: ignore[arg-type]
    assert attn.embed_pos is not None
    assert attn.embed_pos.weight.shape == (16, 16)
    plain, _ = train_mqar(
        short,
        TrainConfig(mixer="attention", abs_positions=False, **kw),  # type: ignore[arg-type]
    )
    assert plain.embed_pos is None
    rwkv, _ = train_mqar(short, TrainConfig(mixer="rwkv", **kw))  # type: ignore[arg-type]
    assert rwkv.embed_pos is None
    frozen = TrainConfig(mixer="attention", d_model=16, max_steps=1, lr=1e-12, weight_decay=0.0,
                         progress=False)  # fmt: skip
    grown, res = train_mqar(longer, frozen, init=(attn, 16))
    assert res.init_from == "L16"
    assert grown.embed_pos is not None
    assert grown.embed_pos.weight.shape == (32, 16)
    torch.testing.assert_close(
        grown.embed_pos.weight[:16], attn.embed_pos.weight, atol=1e-9, rtol=0
    )
    shrunk, _ = train_mqar(short, frozen, init=(grown, 32))  # back to L=16: the first rows
    assert shrunk.embed_pos is not None
    torch.testing.assert_close(
        shrunk.embed_pos.weight, grown.embed_pos.weight[:16], atol=1e-9, rtol=0
    )
    with pytest.raises(ValueError, match="abs_positions"):
        TrainConfig(abs_positions=1)  # type: ignore[arg-type]


def test_zoology_reference_table() -> None:
    assert zoology_reference("hyena", 64, 128) == 0.74
    assert zoology_reference("rwkv", 64, 128) == 0.93
    assert zoology_reference("retnet", 64, 128) is None
    assert zoology_reference("attention", 256, 128, 16) == 0.99  # the acceptance value
    assert zoology_reference("attention", 64, 128, 16) is None  # not a Figure-2 setting


def test_cli_writes_results_and_plot(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    rc = main([
        "--mixers", "attention,hyena", "--settings", "16:2,32:4", "--steps", "2", "--vocab-size", "64",
        "--num-train", "64", "--num-test", "32", "--out", str(tmp_path), "--no-progress",
    ])  # fmt: skip
    assert rc == 0
    out = capsys.readouterr().out
    assert "zoology" in out
    assert "hyena" in out
    rows = json.loads((tmp_path / "mqar_results.json").read_text())
    assert {(r["mixer"], r["seq_len"]) for r in rows} == {
        ("attention", 16),
        ("attention", 32),
        ("hyena", 16),
        ("hyena", 32),
    }
    assert (tmp_path / "mqar_accuracy_vs_seq_len.png").stat().st_size > 1000
    assert format_table([]).startswith("mixer")


def test_cli_curriculum_per_setting_steps_and_mixer_kwargs(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    rc = main([
        "--mixers", "hyena", "--settings", "32:4,16:2", "--steps", "1", "3", "--num-train", "64", "96",
        "--batch-size", "8", "4",
        "--vocab-size", "64", "--num-test", "16", "--curriculum", "--out", str(tmp_path),
        "--mixer-kwargs", '{"hyena": {"filter_order": 8}}', "--no-progress",
    ])  # fmt: skip
    assert rc == 0
    rows = json.loads((tmp_path / "mqar_results.json").read_text())
    # the curriculum runs the settings in the order given, each with the steps given for it
    assert [(r["seq_len"], r["steps"], r["init_from"]) for r in rows] == [
        (32, 1, None),
        (16, 3, "L32"),
    ]
    # tokens/s counts the setting's own batch: 8 x 32 tokens a step at L=32, 4 x 16 at L=16
    assert [r["train_tokens_per_s"] * r["train_seconds"] for r in rows] == pytest.approx(
        [1 * 8 * 32, 3 * 4 * 16]
    )
    with pytest.raises(ValueError, match="one value per setting"):
        run_grid(["hyena"], [(16, 2), (32, 4)], max_steps=[1, 2, 3], vocab_size=64)
    with pytest.raises(SystemExit):
        main(["--mixer-kwargs", "[1]"])
    assert "--mixer-kwargs" in capsys.readouterr().err


def test_cli_rejects_unknown_mixer(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["--mixers", "lstm", "--steps", "1"]) == 2
    assert "unknown mixers" in capsys.readouterr().err


def test_cli_abs_positions_flag(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``--abs-positions on`` adds an (L, d) table to a mixer that has none by default, and
    ``off`` removes attention's."""
    common = ["--settings", "16:2", "--steps", "1", "--num-train", "32", "--vocab-size", "64",
              "--num-test", "8", "--d-model", "16", "--no-progress"]  # fmt: skip
    params = {}
    for mixer in ("rwkv", "attention"):
        for flag in ("auto", "on", "off"):
            out = tmp_path / f"{mixer}-{flag}"
            assert (
                main(["--mixers", mixer, "--abs-positions", flag, "--out", str(out), *common]) == 0
            )
            params[mixer, flag] = json.loads((out / "mqar_results.json").read_text())[0][
                "num_parameters"
            ]
    assert params["rwkv", "on"] - params["rwkv", "off"] == 16 * 16
    assert params["rwkv", "auto"] == params["rwkv", "off"]
    assert params["attention", "auto"] - params["attention", "off"] == 16 * 16
    assert params["attention", "on"] == params["attention", "auto"]


def test_bf16_precision_autocasts_the_training_forward(tiny_data, monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``precision="bf16"`` runs the training logits in bfloat16 (fp32 otherwise); the weights
    stay fp32, the run learns, and the CLI passes the flag through."""
    import seedbed.sequence_models.mqar.train as train_mod

    seen: list[torch.dtype] = []
    original = train_mod._masked_logits

    def spy(model, inputs, labels):  # type: ignore[no-untyped-def]
        logits, target = original(model, inputs, labels)
        seen.append(logits.dtype)
        return logits, target

    monkeypatch.setattr(train_mod, "_masked_logits", spy)
    cfg = dict(mixer="rwkv", d_model=16, batch_size=32, lr=1e-2, progress=False)
    _, first = train_mqar(tiny_data, TrainConfig(max_steps=1, **cfg))  # type: ignore[arg-type]
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        seen.clear()
        model, res = train_mqar(tiny_data, TrainConfig(epochs=4, precision=precision, **cfg))  # type: ignore[arg-type]
        assert res.precision == precision
        assert seen[0] == dtype  # a training step
        assert seen[-1] == torch.float32  # the evaluation
        assert all(p.dtype == torch.float32 for p in model.parameters())
        assert res.final_train_loss < first.final_train_loss - 0.5  # it learns
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp16")
    out = tmp_path / "bf16"
    args = ["--mixers", "attention", "--settings", "16:2", "--steps", "2", "--num-train", "32",
            "--vocab-size", "64", "--num-test", "8", "--d-model", "16", "--no-progress",
            "--precision", "bf16", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    assert json.loads((out / "mqar_results.json").read_text())[0]["precision"] == "bf16"


def test_saved_model_loads_back_and_warm_starts(tiny_data, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """``save_dir`` checkpoints during training (newest kept) and at the end;
    ``load_mqar_model`` rebuilds the same model, usable as ``init``."""
    from seedbed.core_layers import save_checkpoint
    from seedbed.core_layers.training import list_checkpoints
    from seedbed.sequence_models.mqar import evaluate, load_mqar_model

    save = tmp_path / "run"
    cfg = TrainConfig(
        mixer="attention", d_model=16, max_steps=3, progress=False, save_dir=save,
        save_every_s=1e-9, mixer_kwargs={"rope_theta": None},
    )  # fmt: skip
    model, res = train_mqar(tiny_data, cfg)
    assert [p.name for p in list_checkpoints(save)] == ["step_00000003"]
    loaded, seq_len = load_mqar_model(save)
    assert seq_len == 16
    assert loaded.config == model.config
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    assert loaded.lm_head.weight is loaded.embed.weight  # still tied
    assert evaluate(loaded, tiny_data.test_inputs, tiny_data.test_labels) == res.test_accuracy
    _, again = train_mqar(
        tiny_data, TrainConfig(**{**cfg.__dict__, "save_dir": None}), (loaded, 16)
    )
    assert again.init_from == "L16"
    with pytest.raises(FileNotFoundError, match="no saved MQAR model"):
        load_mqar_model(tmp_path / "empty")
    save_checkpoint(tmp_path / "other", 1, torch.nn.Linear(2, 2), {"step": 1})
    with pytest.raises(ValueError, match="not one of an MQAR model"):
        load_mqar_model(tmp_path / "other")
    with pytest.raises(ValueError, match="save_every_s"):
        TrainConfig(save_every_s=0)
    with pytest.raises(ValueError, match="save_dir"):
        TrainConfig(save_dir=3)  # type: ignore[arg-type]
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    import seedbed.sequence_models.mqar.train as train_mod

    def no_training(*args):  # type: ignore[no-untyped-def]
        raise AssertionError("trained before finding that save_dir cannot be made")

    monkeypatch.setattr(train_mod, "_masked_logits", no_training)
    with pytest.raises(OSError, match="a-file"):  # before any training, not after it
        train_mqar(tiny_data, TrainConfig(**{**cfg.__dict__, "save_dir": blocker / "run"}))
    monkeypatch.undo()
    # saved before LMConfig.logit_scale existed: its tied head scaled logits by D^-0.5
    state = torch.load(save / "step_00000003" / "trainer_state.pt", weights_only=True)
    del state["lm_config"]["logit_scale"]
    torch.save(state, save / "step_00000003" / "trainer_state.pt")
    legacy, _ = load_mqar_model(save)
    assert (legacy.config.logit_scale, legacy.config.embed_std) == (16**-0.5, 1.0)
    ids = tiny_data.test_inputs[:2]
    with torch.no_grad():
        torch.testing.assert_close(legacy(ids), 16**-0.5 * loaded(ids))
    # a checkpoint whose config this version cannot build
    state["lm_config"]["no_such_field"] = 1
    torch.save(state, save / "step_00000003" / "trainer_state.pt")
    with pytest.raises(ValueError, match="cannot rebuild"):
        load_mqar_model(save)


def test_cli_save_models_and_init_from(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    common = ["--mixers", "rwkv", "--settings", "16:2", "--steps", "2", "--num-train", "32",
              "--vocab-size", "64", "--num-test", "8", "--d-model", "16", "--no-progress"]  # fmt: skip
    assert main([*common, "--save-models", "--out", str(tmp_path / "a")]) == 0
    run = tmp_path / "a" / "models" / "rwkv-L16-kv2-d16-lr0.003"
    assert (run / "step_00000002").is_dir()
    assert main([*common, "--init-from", str(run), "--out", str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b" / "mqar_results.json").read_text())[0]["init_from"] == "L16"
    capsys.readouterr()
    assert main([*common, "--init-from", str(tmp_path / "nowhere")]) == 2
    assert "--init-from" in capsys.readouterr().err


def test_lr_schedule_warms_up_and_decays_by_steps_or_by_time() -> None:
    from seedbed.sequence_models.mqar.train import lr_at

    by_steps = TrainConfig(lr=1.0, warmup_frac=0.05)
    lrs = [lr_at(by_steps, s, 1000, 0.0) for s in range(1000)]
    assert lrs[0] == pytest.approx(1 / 50)
    assert lrs[49] == pytest.approx(1.0)
    assert lrs[-1] < 1e-4
    assert max(lrs) == pytest.approx(1.0)
    # a time budget that ends the run long before its steps: the same shape over time,
    # continuous where the warm-up hands over to the cosine
    by_time = TrainConfig(lr=1.0, warmup_frac=0.05, time_budget_s=100.0)
    ts = [i / 100 for i in range(10_000)]
    lrs = [lr_at(by_time, int(20 * t), 100_000, t) for t in ts]
    assert max(abs(a - b) for a, b in itertools.pairwise(lrs)) < 0.01
    assert lrs[ts.index(5.0)] == pytest.approx(1.0, abs=1e-3)
    assert lrs[-1] < 1e-3


def test_embed_init_choice(tiny_data: MQARData, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``embed_init="gpt2"`` (default): N(0, 0.02) rows, unscaled tied head; ``"unit"``: the
    earlier N(0, 1) rows with logits x d^-0.5."""
    kw = dict(mixer="rwkv", d_model=16, max_steps=1, lr=1e-12, progress=False)
    gpt2, res = train_mqar(tiny_data, TrainConfig(**kw))  # type: ignore[arg-type]
    unit, res_unit = train_mqar(tiny_data, TrainConfig(embed_init="unit", **kw))  # type: ignore[arg-type]
    assert (res.embed_init, res_unit.embed_init) == ("gpt2", "unit")
    assert gpt2.config.logit_scale == 1.0
    assert unit.config.logit_scale == 16**-0.5
    assert gpt2.embed.weight.std().item() < 0.05 < 0.5 < unit.embed.weight.std().item()
    with pytest.raises(ValueError, match="embed_init must be one of"):
        TrainConfig(embed_init="xavier")
    with pytest.raises(ValueError, match="pass the embed_init the init model was trained with"):
        train_mqar(tiny_data, TrainConfig(**kw), init=(unit, 16))  # type: ignore[arg-type]
    _, warm = train_mqar(tiny_data, TrainConfig(embed_init="unit", **kw), init=(unit, 16))  # type: ignore[arg-type]
    assert warm.init_from == "L16"
    args = ["--mixers", "rwkv", "--settings", "16:2", "--steps", "1", "--num-train", "32",
            "--vocab-size", "64", "--num-test", "8", "--d-model", "16", "--no-progress",
            "--embed-init", "unit", "--out", str(tmp_path)]  # fmt: skip
    assert main(args) == 0
    assert json.loads((tmp_path / "mqar_results.json").read_text())[0]["embed_init"] == "unit"
