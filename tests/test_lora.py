"""LoRA on the backbone (train.lora): what trains, learning, exact resume, and an export merged into a plain model."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fulldit.checkpoint import load_state
from fulldit.cli import main
from fulldit.config import load_config
from fulldit.errors import InputError
from fulldit.generate import Pipeline
from fulldit.model import FullDiT
from fulldit.train.config import LORA_TARGETS, LoraConfig
from fulldit.train.loop import train
from fulldit.train.lora import apply_lora, is_adapter, merged_state
from fulldit.train.state import split_state
from tests.conftest import randomize, tiny_model_config
from tests.test_train import CONFIG, FAST, _run_cli

LORA = [*FAST, "train.lora.enabled=true", "train.lora.rank=4", "train.lora.alpha=8"]
SETTINGS = LoraConfig(enabled=True, rank=4, alpha=8.0)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A "pretrained" backbone: configs/tiny.yaml (2 blocks) with random non-zero weights, as a checkpoint."""
    out = tmp_path_factory.mktemp("base") / "base"
    torch.manual_seed(1)
    pipe = Pipeline.from_config(load_config(CONFIG, ["model.layers=2"]))
    randomize(pipe.model, seed=1, std=0.05)
    pipe.save_pretrained(out)
    return out


def _inputs(cfg: object, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, cfg.in_channels, 2, 4, 4, generator=g)
    return x, torch.tensor([0.3, 0.8]), torch.randn(2, 5, cfg.text_dim, generator=g)


def _trained_name(name: str) -> bool:
    return is_adapter(name) or name.startswith("conditions.") or name.endswith(".cond_gate")


def test_adapters_start_at_zero_and_only_they_and_the_conditions_train() -> None:
    cfg = tiny_model_config(condition_gate=True)
    torch.manual_seed(0)
    model = randomize(FullDiT(cfg))
    x, t, ctx = _inputs(cfg)
    with torch.no_grad():
        before = model(x, t, ctx)
    trained, total = apply_lora(model, SETTINGS)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names == {n for n, _ in model.named_parameters() if _trained_name(n)}
    for i in range(cfg.layers):  # every target of every block is adapted; gates and condition modules train in full
        for target in LORA_TARGETS:
            assert f"blocks.{i}.{target}.lora_A.default.weight" in names
        assert f"blocks.{i}.cond_gate" in names
    assert any(n.startswith("conditions.camera.") for n in names)
    assert trained == sum(p.numel() for n, p in model.named_parameters() if n in names) < total / 2
    with torch.no_grad():  # B = 0 at init: the adapted model is the backbone
        torch.testing.assert_close(model(x, t, ctx), before, atol=0, rtol=0)
    model(x, t, ctx).square().mean().backward()
    assert all(p.grad is None for n, p in model.named_parameters() if n not in names)
    assert all(model.get_parameter(f"blocks.{i}.ffn.2.lora_B.default.weight").grad.abs().sum() > 0 for i in range(2))


def test_bad_lora_settings_are_one_line_errors() -> None:
    with pytest.raises(InputError, match="not linears of a block.*self_attn.q"):
        apply_lora(FullDiT(tiny_model_config()), LoraConfig(enabled=True, targets=("self_attn.qkv",)))
    with pytest.raises(InputError, match="train.lora.rank"):
        LoraConfig(rank=0)
    with pytest.raises(InputError, match="train.lora.dropout"):
        LoraConfig(dropout=1.0)


def test_merged_weights_compute_what_the_adapted_model_computes() -> None:
    cfg = tiny_model_config(condition_gate=True)
    torch.manual_seed(0)
    model = randomize(FullDiT(cfg))
    apply_lora(model, SETTINGS)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if is_adapter(name):  # trained adapters: B != 0
                p.copy_(torch.randn_like(p) * 0.3)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    merged = merged_state(cfg, SETTINGS, model.state_dict())
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())  # the live weights are untouched
    assert not any("lora" in k or "base_layer" in k for k in merged)
    plain = FullDiT(cfg)
    plain.load_state_dict(merged)  # strict: exactly a plain FullDiT's tensors
    x, t, ctx = _inputs(cfg, seed=1)
    with torch.no_grad():
        adapted, out = model(x, t, ctx), plain(x, t, ctx)
        assert (adapted - randomize(FullDiT(cfg))(x, t, ctx)).abs().max() > 0.1  # the adapters matter
    torch.testing.assert_close(out, adapted, atol=1e-5, rtol=1e-5)


def test_lora_training_resumes_exactly_and_exports_a_merged_model(tmp_path: Path, base: Path) -> None:
    """4 steps straight == 1 step + --resume (base taken from trainer.json); only trained tensors are saved."""
    common = [*LORA, "train.steps=4", "train.save_every=2"]
    straight = train(CONFIG, str(tmp_path / "a"), [*common, "train.sample_every=4"], init=str(base), device="cpu")
    assert (tmp_path / "a" / "samples" / "step_00000004.mp4").is_file()  # sampled with the merged EMA
    first = train(CONFIG, str(tmp_path / "b"), [*common, "train.max_minutes=1e-9"], init=str(base), device="cpu")
    assert first.step == 1
    second = train(CONFIG, str(tmp_path / "b"), common, resume=True, device="cpu")  # no --init: the recorded base
    assert second.step == 4 and all(second.losses[s] == straight.losses[s] for s in (2, 3, 4))
    step = Path("checkpoints/step_00000004")
    for name in ("weights", "optimizer", "ema"):
        a = load_file(str(tmp_path / "a" / step / f"{name}.safetensors"))
        b = load_file(str(tmp_path / "b" / step / f"{name}.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    # what is saved is what is trained: adapters + condition modules, their moments, their EMA
    weights = load_file(str(tmp_path / "a" / step / "weights.safetensors"))
    assert all(k.startswith("model.") and _trained_name(k[len("model.") :]) for k in weights)
    assert any(is_adapter(k) for k in weights) and any(k.startswith("model.conditions.") for k in weights)
    moments = {
        k[len("state.") :].rsplit(".", 1)[0] for k in load_file(str(tmp_path / "a" / step / "optimizer.safetensors"))
    }
    assert moments == set(weights)
    assert not (tmp_path / "a" / step / "ema").exists()
    # OUT/model: base + EMA adapters merged (peft's merge), stored in bf16, loadable without peft
    cfg = load_config(CONFIG, ["model.layers=2"]).model
    model = FullDiT(cfg)
    model.load_state_dict(load_state(base))
    apply_lora(model, SETTINGS)
    ema = split_state(load_file(str(tmp_path / "a" / step / "ema.safetensors")), "model.")
    assert not model.load_state_dict(ema, strict=False).unexpected_keys
    exported = load_state(straight.model)
    expected = merged_state(cfg, SETTINGS, model.state_dict())
    assert exported.keys() == expected.keys()
    assert all(torch.equal(exported[k], v.to(torch.bfloat16)) for k, v in expected.items())
    base_state = load_state(base)
    assert not torch.equal(exported["blocks.0.self_attn.q.weight"], base_state["blocks.0.self_attn.q.weight"])
    assert torch.equal(exported["patch_embedding.weight"], base_state["patch_embedding.weight"].to(torch.bfloat16))
    assert main(["info", str(straight.model)]) == 0
    # resuming with other adapters (here: none) is refused before anything is built
    with pytest.raises(InputError, match="train.lora"):
        train(CONFIG, str(tmp_path / "b"), [*FAST, "train.steps=6"], resume=True, device="cpu")


def test_lora_loss_decreases_on_a_fixed_batch(tmp_path: Path, base: Path) -> None:
    from fulldit.world.synth import write_dataset

    write_dataset(tmp_path / "data", n=1, seed=3, frames=4, height=32, width=32, device="cpu")
    run = train(CONFIG, str(tmp_path / "run"),
                [*LORA, "train.steps=30", "train.save_every=30", "train.data.source=folder",
                 f"train.data.path={tmp_path / 'data'}", "flow.timestep_sampling=uniform", "train.lr=5e-3",
                 "train.curriculum.none=0.0", "frames.first=0", "frames.prefix=0", "frames.last=0"],
                init=str(base), device="cpu")  # fmt: skip
    early = sum(run.losses[s] for s in range(1, 6)) / 5
    late = sum(run.losses[s] for s in range(26, 31)) / 5
    assert late < 0.6 * early, (early, late)


@pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="torch.distributed with gloo is not available")
def test_lora_under_fsdp_equals_one_process(tmp_path: Path, base: Path) -> None:
    """torchrun, 2 CPU processes with FSDP2 == 1 process accumulating 2 micro-batches; samples and export on rank 0."""
    common = [*LORA, "train.steps=2", "train.save_every=2", "train.sample_every=2", "train.parallel=fsdp"]
    one = train(CONFIG, str(tmp_path / "one"), [*common, "train.micro_batch=2"], init=str(base), device="cpu")
    proc = _run_cli([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                     "-m", "fulldit.cli", "train", "--config", CONFIG, "--out", str(tmp_path / "two"), "--device",
                     "cpu", "--init", str(base), *common], tmp_path)  # fmt: skip
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    step = Path("checkpoints/step_00000002/weights.safetensors")
    a, b = load_file(str(tmp_path / "one" / step)), load_file(str(tmp_path / "two" / step))
    assert a.keys() == b.keys() and any(is_adapter(k) for k in a)
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=2e-5, rtol=1e-4, msg=k)
    ma, mb = load_state(one.model), load_state(tmp_path / "two" / "model")
    assert ma.keys() == mb.keys()
    for k in ma:
        torch.testing.assert_close(mb[k].float(), ma[k].float(), atol=1e-4, rtol=1e-2, msg=k)  # bf16 storage
    assert (tmp_path / "two" / "samples" / "step_00000002.mp4").is_file()
