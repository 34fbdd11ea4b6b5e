"""`fulldit convert --from wan2.1`: a converted Wan2.1 transformer computes what diffusers' computes, conditions start
gated off, bad directories are one-line errors, and `fulldit generate` runs the whole converted pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from fulldit.attention import key_mask
from fulldit.checkpoint import INDEX, load_state, read_config
from fulldit.cli import main
from fulldit.conditions import ConditionInput
from fulldit.config import load_config
from fulldit.convert import convert_wan
from fulldit.errors import InputError
from fulldit.generate import Pipeline
from fulldit.model import FullDiT, gated_video_attention, separate_video_attention
from tests.conftest import randomize, tiny_model_config

# A tiny Wan2.1: 2 layers, 2 heads x 12, text width 32 (the tiny UMT5's), 4 latent channels (the tiny VAE's).
WAN = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=2,
    attention_head_dim=12,
    in_channels=4,
    out_channels=4,
    text_dim=32,
    freq_dim=32,
    ffn_dim=48,
    num_layers=2,
)
WORDS = ["a red cube rolls to the left", "the camera pans over a blue sphere"]

# diffusers -> original Wan2.1 names, written independently of fulldit/convert/wan.py (substring replacements).
TO_ORIGINAL = [
    ("condition_embedder.time_embedder.linear_1.", "time_embedding.0."),
    ("condition_embedder.time_embedder.linear_2.", "time_embedding.2."),
    ("condition_embedder.time_proj.", "time_projection.1."),
    ("condition_embedder.text_embedder.linear_1.", "text_embedding.0."),
    ("condition_embedder.text_embedder.linear_2.", "text_embedding.2."),
    (".attn1.", ".self_attn."),
    (".attn2.", ".cross_attn."),
    (".to_q.", ".q."),
    (".to_k.", ".k."),
    (".to_v.", ".v."),
    (".to_out.0.", ".o."),
    (".norm2.", ".norm3."),  # diffusers' norm2 is the cross-attention norm, Wan's norm3
    (".ffn.net.0.proj.", ".ffn.0."),
    (".ffn.net.2.", ".ffn.2."),
    ("proj_out.", "head.head."),
]


def original_name(name: str) -> str:
    if name == "scale_shift_table":
        return "head.modulation"
    for a, b in TO_ORIGINAL:
        name = name.replace(a, b)
    return name.replace(".scale_shift_table", ".modulation")


def write_tokenizer_and_umt5(path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(WORDS, trainers.WordLevelTrainer(special_tokens=["<pad>", "</s>", "<unk>"]))
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(path / "tokenizer")
    cfg = UMT5Config(vocab_size=64, d_model=32, d_ff=64, num_layers=1, num_heads=2, d_kv=16, pad_token_id=0)
    UMT5EncoderModel(cfg).save_pretrained(path / "text_encoder")


@pytest.fixture(scope="module")
def wan_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random diffusers Wan pipeline directory: sharded transformer/, vae/, text_encoder/, tokenizer/."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    root = tmp_path_factory.mktemp("wan")
    torch.manual_seed(0)
    model = WanTransformer3DModel(**WAN)
    with torch.no_grad():  # norms start at 1 / 0: make them distinct, so a swapped norm shows in the output
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.2)
    model.save_pretrained(root / "transformer", max_shard_size="20KB")
    stats = dict(latents_mean=[0.1, -0.2, 0.3, 0.0], latents_std=[1.5, 2.0, 0.5, 1.0])
    vae = AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1, **stats)
    vae.save_pretrained(root / "vae")
    write_tokenizer_and_umt5(root)
    index = {"_class_name": "WanPipeline", "transformer": ["diffusers", "WanTransformer3DModel"]}
    (root / "model_index.json").write_text(json.dumps(index))
    return root


@pytest.fixture(scope="module")
def converted(wan_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CLI's conversion of the pipeline directory (VAE and text encoder found inside it), in small shards."""
    out = tmp_path_factory.mktemp("converted") / "ckpt"
    args = ["convert", "--from", "wan2.1", str(wan_dir), "--out", str(out), "--dtype", "float32"]
    assert main(args + ["--text-dtype", "float32", "--shard-mb", "0.02"]) == 0
    return out


def diffusers_model(wan_dir: Path) -> torch.nn.Module:
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel.from_pretrained(wan_dir / "transformer").eval()


def inputs(batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(batch, 4, 3, 8, 8, generator=g), torch.randn(batch, 7, 32, generator=g)  # latents, text


def load_model(ckpt: Path) -> FullDiT:
    return Pipeline.from_pretrained(ckpt, device="cpu").model


def max_diff_to_diffusers(model: FullDiT, reference: torch.nn.Module) -> float:
    """Max |ours - diffusers| over several flow times t (diffusers' timestep is 1000 t; both predict noise - x0)."""
    x, context = inputs()
    worst = 0.0
    for t in ([0.0, 0.0], [0.25, 0.6], [0.937, 1.0]):
        t = torch.tensor(t)
        with torch.no_grad():
            ours = model(x, t, context)
            theirs = reference(x, t * 1000, context, return_dict=False)[0]
        assert theirs.abs().max() > 0.5  # a real output, not zeros
        worst = max(worst, (ours - theirs).abs().max().item())
    return worst


def test_diffusers_layout_matches_diffusers(wan_dir: Path, converted: Path) -> None:
    """Same outputs as diffusers for the same inputs, float32 (measured ~3e-6: diffusers' fp32 timestep sinusoid)."""
    assert len(list((wan_dir / "transformer").glob("*.safetensors"))) > 1  # sharded input
    assert (converted / INDEX).is_file() and len(list(converted.glob("model-*.safetensors"))) > 1  # sharded output
    cfg = read_config(converted)
    assert cfg.model.condition_gate and cfg.model.conditions == ("camera", "reference", "depth")
    assert (cfg.model.dim, cfg.model.heads, cfg.model.layers, cfg.model.text_dim) == (24, 2, 2, 32)
    assert cfg.flow.prediction == "velocity" and cfg.codec.kind == "wan-vae" and cfg.text.kind == "t5"
    assert cfg.codec.path == str((wan_dir / "vae").resolve()) and cfg.text.path == str(wan_dir.resolve())
    assert cfg.text.pad_to_max_length and cfg.text.max_length == 512
    assert max_diff_to_diffusers(load_model(converted), diffusers_model(wan_dir)) <= 1e-5


def test_sampling_follows_wans_flow_convention(wan_dir: Path, converted: Path) -> None:
    """fulldit's Euler sampler on the converted model == diffusers' flow-matching Euler scheduler on Wan's:
    same time grid, time scale, velocity sign (noise - x0) and step direction."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from fulldit.flow import euler_sample, sampling_times, to_velocity

    model, flow, reference = load_model(converted), read_config(converted).flow, diffusers_model(wan_dir)
    noise, context = inputs(1)
    times = sampling_times(4, shift=3.0)
    scheduler = FlowMatchEulerDiscreteScheduler()  # shift 1: it takes our (already shifted) sigmas as they are
    scheduler.set_timesteps(sigmas=times[:-1].tolist())
    with torch.no_grad():
        ours = euler_sample(lambda x, t: to_velocity(model(x, t, context), x, t, flow), noise, times)
        theirs = noise.clone()
        for step in scheduler.timesteps:
            velocity = reference(theirs, step[None], context, return_dict=False)[0]
            theirs = scheduler.step(velocity, step, theirs, return_dict=False)[0]
    assert (ours - noise).abs().max() > 0.5 and (ours - theirs).abs().max() <= 1e-5


@pytest.mark.parametrize("prefix", ["", "model.diffusion_model."])
def test_original_layout_matches_diffusers(wan_dir: Path, converted: Path, tmp_path: Path, prefix: str) -> None:
    """Wan2.1's own release layout (config.json of WanModel, original names) converts to the same weights."""
    reference = diffusers_model(wan_dir)
    src = tmp_path / "wan-original"
    src.mkdir()
    state = {prefix + original_name(k): v.contiguous() for k, v in reference.state_dict().items()}
    save_file(state, str(src / "diffusion_pytorch_model.safetensors"))
    c = reference.config
    config = dict(model_type="t2v", dim=24, ffn_dim=48, freq_dim=32, in_dim=4, out_dim=4, num_heads=2, num_layers=2)
    (src / "config.json").write_text(json.dumps({**config, "text_len": 512, "eps": c.eps, "text_dim": 32}))
    out = tmp_path / "ckpt"
    convert_wan(src, out, vae=wan_dir / "vae", text_encoder=wan_dir, store="float32", text_dtype="float32")
    ours, theirs = load_state(out), load_state(converted)
    assert sorted(ours) == sorted(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)  # same seed: the new condition modules agree too
    assert max_diff_to_diffusers(load_model(out), reference) <= 1e-5


def condition_inputs(present: list[bool]) -> dict[str, ConditionInput]:
    """Camera (B, T, 4 frames x 16), one reference image (B, 1, C, h, w), depth latents (B, C, T, H, W)."""
    g = torch.Generator().manual_seed(2)
    b, on = len(present), torch.tensor(present)
    return {
        "camera": ConditionInput(torch.randn(b, 3, 64, generator=g), on),
        "reference": ConditionInput(torch.randn(b, 1, 4, 8, 8, generator=g), on[:, None]),
        "depth": ConditionInput(torch.randn(b, 4, 3, 8, 8, generator=g), on),
    }


def test_conditions_act_only_once_their_gates_open(converted: Path) -> None:
    model = load_model(converted)
    x, context = inputs()
    t = torch.tensor([0.3, 0.8])
    with torch.no_grad():
        plain = model(x, t, context)
        assert torch.equal(model(x, t, context, conditions=condition_inputs([True, True])), plain)
        for block in model.blocks:  # "training" the zero-initialised gates
            block.cond_gate.normal_(std=0.5, generator=torch.Generator().manual_seed(3))
        gated = model(x, t, context, conditions=condition_inputs([True, False]))
    assert (gated[0] - plain[0]).abs().max() > 1e-2  # sample 0 has the conditions: they now act
    assert torch.equal(gated[1], plain[1])  # sample 1 has none: masked out, exactly the backbone's output


def test_convert_gate_choices(wan_dir: Path, converted: Path, tmp_path: Path, capsys) -> None:
    """--gate none: FullDiT's appended conditions, no gate tensors, acting at once (the backbone's output without
    them); --gate separate: the adapters' merge behind closed gates. Both share the default's condition modules."""
    base = ["convert", "--from", "wan2.1", str(wan_dir), "--dtype", "float32", "--text-dtype", "float32"]
    assert main([*base, "--out", str(tmp_path / "none"), "--gate", "none"]) == 0
    assert "no gate: they act at once" in capsys.readouterr().out
    assert main([*base, "--out", str(tmp_path / "sep"), "--gate", "separate"]) == 0
    plain_cfg, sep_cfg = read_config(tmp_path / "none"), read_config(tmp_path / "sep")
    assert not plain_cfg.model.condition_gate and plain_cfg.model.conditions == ("camera", "reference", "depth")
    assert sep_cfg.model.condition_gate and sep_cfg.model.gate_merge == "separate"
    gated, plain = load_model(converted), load_model(tmp_path / "none")
    assert all(b.cond_gate is None for b in plain.blocks)
    plain_state, gated_state = plain.state_dict(), gated.state_dict()
    assert set(gated_state) - set(plain_state) == {f"blocks.{i}.cond_gate" for i in range(len(gated.blocks))}
    assert all(torch.equal(v, gated_state[k]) for k, v in plain_state.items())  # same backbone, same new modules
    x, context = inputs()
    t = torch.tensor([0.3, 0.8])
    with torch.no_grad():
        backbone = gated(x, t, context)
        torch.testing.assert_close(plain(x, t, context), backbone, atol=1e-5, rtol=1e-5)
        given = plain(x, t, context, conditions=condition_inputs([True, False]))
    assert (given[0] - backbone[0]).abs().max() > 1e-2  # conditions act before any training
    torch.testing.assert_close(given[1], backbone[1], atol=1e-5, rtol=1e-5)  # masked out: the backbone's
    with pytest.raises(SystemExit) as exit_info:  # argparse's choices: a one-line usage error, exit code 2
        main([*base, "--out", str(tmp_path / "bad"), "--gate", "open"])
    assert exit_info.value.code == 2 and "--gate" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_convert_gate_init(wan_dir: Path, converted: Path, tmp_path: Path, capsys) -> None:
    """--gate-init 0.05: the same model with every gate at 0.05, its conditions acting a little from the start
    (the condition modules get gradient at once); an init without a gate, or outside [0, 1], is refused."""
    base = ["convert", "--from", "wan2.1", str(wan_dir), "--dtype", "float32", "--text-dtype", "float32"]
    assert main([*base, "--out", str(tmp_path / "open"), "--gate-init", "0.05"]) == 0
    assert "gates at 0.05" in capsys.readouterr().out
    closed, ajar = load_model(converted), load_model(tmp_path / "open")
    gates = {k: v for k, v in ajar.state_dict().items() if k.endswith("cond_gate")}
    assert len(gates) == len(ajar.blocks) and all(torch.equal(v, torch.full_like(v, 0.05)) for v in gates.values())
    x, context = inputs()
    t = torch.tensor([0.3, 0.8])
    with torch.no_grad():
        backbone = closed(x, t, context, conditions=condition_inputs([True, True]))
        given = ajar(x, t, context, conditions=condition_inputs([True, True]))
    assert 0 < (given - backbone).abs().max() < (backbone.abs().max() * 0.2)  # acting, a little

    def largest_condition_grad(model: torch.nn.Module) -> float:
        model.train()
        model(x, t, context, conditions=condition_inputs([True, True])).square().mean().backward()
        grads = [p.grad for n, p in model.named_parameters() if n.startswith("conditions.") and p.grad is not None]
        return max((float(g.abs().max()) for g in grads), default=0.0)

    assert largest_condition_grad(closed) == 0  # behind closed gates the condition modules cannot learn
    assert largest_condition_grad(ajar) > 0  # ajar, they learn from step 1
    assert main([*base, "--out", str(tmp_path / "bad"), "--gate", "none", "--gate-init", "0.05"]) == 2
    assert "gate_init 0.05" in capsys.readouterr().err and not (tmp_path / "bad" / "config.json").exists()
    with pytest.raises(SystemExit):
        main([*base, "--out", str(tmp_path / "bad2"), "--gate-init", "1.5"])


@pytest.mark.parametrize("attention", ["full", "isolated"])
def test_condition_gate_in_both_layouts(attention: str) -> None:
    """Closed gates leave the output exact in both layouts; open gates act, and the isolated cache still agrees."""
    torch.manual_seed(0)
    model = randomize(FullDiT(tiny_model_config(attention=attention, condition_gate=True))).eval()
    with torch.no_grad():
        for block in model.blocks:  # trained, partly open gates (a gate lies in [0, 1])
            block.cond_gate.uniform_(0.3, 1.0)
    g = torch.Generator().manual_seed(4)
    x, context, t = torch.randn(2, 12, 4, 8, 8, generator=g), torch.randn(2, 5, 16, generator=g), torch.rand(2)
    on = torch.tensor([True, True])
    conditions = {
        "camera": ConditionInput(torch.randn(2, 4, 16, generator=g), on),
        "reference": ConditionInput(torch.randn(2, 1, 12, 8, 8, generator=g), on[:, None]),
        "depth": ConditionInput(torch.randn(2, 12, 4, 8, 8, generator=g), on),
    }
    with torch.no_grad():
        gated = model(x, t, context, conditions=conditions)
        if attention == "isolated":
            cache = model.condition_cache(conditions, model.grid(x.shape), context)
            torch.testing.assert_close(model(x, t, context, cache=cache), gated, atol=1e-5, rtol=0)
        for block in model.blocks:
            block.cond_gate.zero_()
        closed = model(x, t, context, conditions=conditions)
        plain = model(x, t, context)
    assert torch.equal(closed, plain)
    assert (gated - plain).abs().max() > 1e-2


def test_convert_help() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", "--help"])
    assert exit_info.value.code == 0


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()  # drop what earlier steps printed (diffusers' progress bars)
    code = main(args)
    return code, capsys.readouterr().err


def test_layout_errors(wan_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Not a Wan directory, no weights, no VAE for the original layout: one line, exit 2, what was looked for."""
    out = str(tmp_path / "out")
    code, err = run_cli(["convert", "--from", "wan2.1", str(tmp_path / "nope"), "--out", out], capsys)
    assert code == 2 and "no such directory" in err and err.count("\n") == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = run_cli(["convert", "--from", "wan2.1", str(empty), "--out", out], capsys)
    assert code == 2 and "config.json" in err and "model_index.json" in err and err.count("\n") == 1
    (empty / "config.json").write_text(json.dumps({"dim": 24, "num_heads": 2, "num_layers": 2, "ffn_dim": 48}))
    code, err = run_cli(["convert", "--from", "wan2.1", str(empty), "--out", out], capsys)
    assert code == 2 and "diffusion_pytorch_model.safetensors" in err and err.count("\n") == 1
    save_file({"x": torch.zeros(1)}, str(empty / "diffusion_pytorch_model.safetensors"))
    code, err = run_cli(["convert", "--from", "wan2.1", str(empty), "--out", out], capsys)
    assert code == 2 and "--vae" in err and err.count("\n") == 1
    assert not Path(out, "config.json").exists()


def original_dir(wan_dir: Path, path: Path, edit: dict[str, torch.Tensor | None]) -> Path:
    """An original-layout copy of the tiny model with some tensors replaced (or removed: None)."""
    state = {original_name(k): v.contiguous() for k, v in diffusers_model(wan_dir).state_dict().items()}
    for k, v in edit.items():
        state.pop(k) if v is None else state.__setitem__(k, v)
    path.mkdir()
    save_file(state, str(path / "diffusion_pytorch_model.safetensors"))
    config = dict(dim=24, ffn_dim=48, freq_dim=32, in_dim=4, out_dim=4, num_heads=2, num_layers=2, text_dim=32)
    (path / "config.json").write_text(json.dumps(config))
    return path


def test_tensor_errors(wan_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A wrong shape names the tensor, found and expected shapes; missing and unexpected tensors are listed."""
    extra = ["--vae", str(wan_dir / "vae"), "--text-encoder", str(wan_dir), "--out", str(tmp_path / "out")]
    bad = original_dir(wan_dir, tmp_path / "bad", {"blocks.1.ffn.0.weight": torch.zeros(40, 24)})
    code, err = run_cli(["convert", "--from", "wan2.1", str(bad)] + extra, capsys)
    assert code == 2 and err.count("\n") == 1
    assert "blocks.1.ffn.0.weight" in err and "(40, 24)" in err and "(48, 24)" in err

    odd = original_dir(
        wan_dir, tmp_path / "odd", {"blocks.0.self_attn.norm_k.weight": None, "img_emb.proj.1.weight": torch.zeros(2)}
    )
    code, err = run_cli(["convert", "--from", "wan2.1", str(odd)] + extra, capsys)
    assert code == 2 and err.count("\n") == 1
    assert "missing 1 [blocks.0.self_attn.norm_k.weight]" in err and "unexpected 1 [img_emb.proj.1.weight]" in err

    small = original_dir(wan_dir, tmp_path / "small", {})
    no_text = ["convert", "--from", "wan2.1", str(small), "--vae", str(wan_dir / "vae"), "--out", str(tmp_path / "x")]
    code, err = run_cli(no_text, capsys)
    assert code == 2 and "--text-encoder" in err
    (small / "config.json").write_text(json.dumps({**json.loads((small / "config.json").read_text()), "text_dim": 16}))
    code, err = run_cli(["convert", "--from", "wan2.1", str(small)] + extra, capsys)
    assert code == 2 and "text_dim 16" in err  # the UMT5 is 32 wide


def test_generate_end_to_end(converted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`fulldit generate` on the converted checkpoint: Wan VAE + UMT5 + transformer, text-only and with conditions."""
    import numpy as np

    from fulldit.camera import build_path, save_camera_re10k
    from fulldit.video_io import read_video, write_image

    frames, size = 5, 32  # the Wan VAE takes 1 + 4k frames, sizes divisible by 8 (x patch 2)
    base = ["generate", "--checkpoint", str(converted), "--prompt", WORDS[0], "--frames", str(frames)]
    base += ["--size", f"{size}x{size}", "--steps", "2", "--device", "cpu"]
    assert main(base + ["-o", str(tmp_path / "t2v.mp4")]) == 0

    g = torch.Generator().manual_seed(0)
    save_camera_re10k(build_path("orbit-left 0.4rad", frames), tmp_path / "cam.txt")
    write_image(tmp_path / "ref.png", torch.rand(3, 40, 24, generator=g))
    write_image(tmp_path / "first.png", torch.rand(3, size, size, generator=g))
    np.savez(tmp_path / "depth.npz", depth=np.random.default_rng(0).uniform(1, 3, (frames, size, size)))
    conditions = ["--camera", str(tmp_path / "cam.txt"), "--reference", str(tmp_path / "ref.png")]
    conditions += ["--depth", str(tmp_path / "depth.npz"), "--first-frame", str(tmp_path / "first.png")]
    assert main(base + conditions + ["-o", str(tmp_path / "all.mp4")]) == 0
    capsys.readouterr()
    for name in ("t2v", "all"):
        assert read_video(tmp_path / f"{name}.mp4").shape == (frames, 3, size, size)
        assert (tmp_path / f"{name}.png").stat().st_size > 0


def _gated_and_plain() -> tuple[FullDiT, FullDiT, tuple]:
    """A gated full-attention model with random weights, the plain full-attention model with the same weights, and
    inputs in which sample 1 lacks the references (a padding mask in the condition keys)."""
    torch.manual_seed(0)
    gated = randomize(FullDiT(tiny_model_config(attention="full", condition_gate=True)))
    plain = FullDiT(tiny_model_config(attention="full"))
    plain.load_state_dict({k: v for k, v in gated.state_dict().items() if not k.endswith("cond_gate")})
    g = torch.Generator().manual_seed(4)
    x, context, t = torch.randn(2, 12, 4, 8, 8, generator=g), torch.randn(2, 5, 16, generator=g), torch.rand(2)
    on = torch.tensor([True, True])
    conditions = {
        "camera": ConditionInput(torch.randn(2, 4, 16, generator=g), on),
        "reference": ConditionInput(torch.randn(2, 1, 12, 8, 8, generator=g), torch.tensor([[True], [False]])),
        "depth": ConditionInput(torch.randn(2, 12, 4, 8, 8, generator=g), on),
    }
    return gated, plain, (x, t, context, None, conditions)


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def test_gated_attention_opens_into_full_attention() -> None:
    """Gate 0: exactly the backbone, conditions given or not; gate 1: one softmax over [video, conditions], i.e. plain
    `attention: full`. Float32, 1e-5 relative. At 0 the gates get gradients, so training opens them."""
    gated, plain, (x, t, context, mask, conditions) = _gated_and_plain()
    with torch.no_grad():
        for block in gated.blocks:
            block.cond_gate.zero_()
        backbone = gated(x, t, context, mask)
        assert _relative(gated(x, t, context, mask, conditions), backbone) <= 1e-5
        for block in gated.blocks:
            block.cond_gate.fill_(1.0)
        full = plain(x, t, context, mask, conditions)
        assert _relative(gated(x, t, context, mask, conditions), full) <= 1e-5
        assert _relative(full, backbone) > 1e-2  # the conditions matter: the two limits differ
        for block in gated.blocks:
            block.cond_gate.zero_()
    gated(x, t, context, mask, conditions).square().mean().backward()
    assert all(float(block.cond_gate.grad.abs().min()) > 0 for block in gated.blocks)


def test_open_gates_convert_to_plain_full_attention(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`fulldit convert --from open-gates`: every gate open -> a plain full-attention checkpoint with the same outputs;
    a gate not open is a one-line error and nothing is written."""
    from tests.conftest import tiny_config

    gated, _, (x, t, context, mask, conditions) = _gated_and_plain()
    with torch.no_grad():
        for block in gated.blocks:
            block.cond_gate.fill_(1.0)
    cfg = tiny_config(attention="full", condition_gate=True)
    Pipeline.from_config(cfg, model=gated).save_pretrained(tmp_path / "gated")
    assert main(["convert", "--from", "open-gates", str(tmp_path / "gated"), "--out", str(tmp_path / "plain")]) == 0
    plain = Pipeline.from_pretrained(tmp_path / "plain", device="cpu")
    assert not plain.config.model.condition_gate and plain.config.model.attention == "full"
    with torch.no_grad():
        assert _relative(plain.model(x, t, context, mask, conditions), gated(x, t, context, mask, conditions)) <= 1e-5
    with torch.no_grad():
        gated.blocks[1].cond_gate[0] = 0.5
    Pipeline.from_config(cfg, model=gated).save_pretrained(tmp_path / "half")
    assert main(["convert", "--from", "open-gates", str(tmp_path / "half"), "--out", str(tmp_path / "no")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "blocks.1.cond_gate" in err[0] and "not open" in err[0]
    assert not (tmp_path / "no").exists()


# -- the separate-softmax gate (model.gate_merge: separate), kept to compare with the LSE gate (#15) ----------------


def _separate_and_plain(attention: str = "full") -> tuple[FullDiT, FullDiT]:
    """A gated model merging by a separate softmax, random weights, and the ungated model with the same weights."""
    torch.manual_seed(0)
    cfg = tiny_model_config(attention=attention, condition_gate=True, gate_merge="separate")
    separate = randomize(FullDiT(cfg))
    plain = FullDiT(tiny_model_config(attention=attention))
    plain.load_state_dict({k: v for k, v in separate.state_dict().items() if not k.endswith("cond_gate")})
    with torch.no_grad():
        for block in separate.blocks:
            block.cond_gate.zero_()  # closed, as converted
    return separate, plain


def condition_inputs_tiny(present: list[bool]) -> dict[str, ConditionInput]:
    """Every condition of the tiny model (12 latent channels, 4 x 8 x 8 latents), present per sample as given."""
    g = torch.Generator().manual_seed(6)
    b, on = len(present), torch.tensor(present)
    return {
        "camera": ConditionInput(torch.randn(b, 4, 16, generator=g), on),
        "reference": ConditionInput(torch.randn(b, 1, 12, 8, 8, generator=g), on[:, None]),
        "depth": ConditionInput(torch.randn(b, 12, 4, 8, 8, generator=g), on),
    }


@pytest.mark.parametrize("attention", ["full", "isolated"])
def test_separate_gate_closed_is_the_backbone(attention: str) -> None:
    """Gate 0: the backbone without conditions (1e-5 relative, float32), with conditions given and a padded one; gate 1
    lets the conditions act but is not full attention (that is what the LSE gate is)."""
    separate, plain = _separate_and_plain(attention)
    _, _, (x, t, context, mask, conditions) = _gated_and_plain()
    with torch.no_grad():
        backbone = plain(x, t, context, mask)
        assert _relative(separate(x, t, context, mask, conditions), backbone) <= 1e-5
        for block in separate.blocks:
            block.cond_gate.fill_(1.0)
        opened = separate(x, t, context, mask, conditions)
        assert _relative(opened, backbone) > 1e-2  # the conditions act once the gates open
        assert _relative(opened, plain(x, t, context, mask, conditions)) > 1e-2  # not one softmax over everything


def _attention_by_hand(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Plain SDPA of q (B, Lq, H, d) over the keys marked in `keys` (B, Lk); rows without a key give 0."""
    out = F.scaled_dot_product_attention(*(a.transpose(1, 2) for a in (q, k, v)), attn_mask=keys[:, None, None, :])
    return torch.where(keys.any(1)[:, None, None, None], out.transpose(1, 2), 0.0)


@pytest.mark.parametrize("gate", [[1.0, 1.0], [0.25, 1.0]])
@pytest.mark.parametrize("patterns", ["few", "many"])
def test_separate_merge_adds_a_second_softmax(gate: list[float], patterns: str) -> None:
    """out = O_v + g O_c with O_v, O_c two plain softmax attentions on the same q/k/v (1e-5, float32): condition
    padding masked, a row without any condition key adds 0 (no NaN), in dense calls per mask pattern and in the one
    masked call of many patterns. At g = 1 it is not one softmax over [video, conditions], which the LSE merge is."""
    cond = torch.tensor([[True] * 6, [True] * 4 + [False] * 2, [False] * 6])  # all real, padded, none
    if patterns == "many":  # more patterns than attention.MAX_DENSE_GROUPS
        cond = torch.cat([cond, torch.tensor([[False, True] * 3, [True] + [False] * 5, [False] * 5 + [True]])])
    b = cond.shape[0]
    g = torch.Generator().manual_seed(5)
    qv, kv, vv = (torch.randn(b, 10, 2, 8, generator=g) for _ in range(3))
    kc, vc = (torch.randn(b, 6, 2, 8, generator=g) * 2 for _ in range(2))
    g_h = torch.tensor(gate)
    out = separate_video_attention(g_h, qv, kv, vv, kc, vc, key_mask(cond))
    o_v = _attention_by_hand(qv, kv, vv, torch.ones(b, 10, dtype=torch.bool))
    o_c = _attention_by_hand(qv, kc, vc, cond)
    assert out.isfinite().all()
    assert _relative(out, (o_v + g_h[:, None] * o_c).flatten(-2)) <= 1e-5
    assert _relative(out[2], o_v[2].flatten(-2)) <= 1e-6  # no condition key: the video's attention alone
    if gate == [1.0, 1.0]:
        one = _attention_by_hand(qv, torch.cat([kv, kc], 1), torch.cat([vv, vc], 1), F.pad(cond, (10, 0), value=True))
        lse = gated_video_attention(g_h, qv, kv, vv, kc, vc, key_mask(cond))
        assert _relative(lse, one.flatten(-2)) <= 1e-5
        assert _relative(out[:2], one[:2].flatten(-2)) > 1e-2


def test_separate_gate_gradients_reach_the_gate_and_the_conditions() -> None:
    """Closed: every gate gets a gradient, the condition modules none (they act only through the gate); partly open:
    every condition module gets one. A sample without any condition stays the backbone's, gradients stay finite."""
    separate, plain = _separate_and_plain("full")
    separate.train()
    x, t, context = torch.randn(2, 12, 4, 8, 8), torch.rand(2), torch.randn(2, 5, 16)
    conditions = condition_inputs_tiny([True, False])
    with torch.no_grad():
        backbone = plain(x, t, context)
    separate(x, t, context, None, conditions).square().mean().backward()
    assert all(float(block.cond_gate.grad.abs().min()) > 0 for block in separate.blocks)
    assert all(p.grad is None or not p.grad.any() for p in separate.conditions.parameters())
    separate.zero_grad()
    with torch.no_grad():
        for block in separate.blocks:
            block.cond_gate.fill_(0.5)
    out = separate(x, t, context, None, conditions)
    out.square().mean().backward()
    assert torch.equal(out[1].detach(), backbone[1])  # sample 1 has no condition key: exactly the backbone
    assert all(p.grad.isfinite().all() for p in separate.parameters() if p.grad is not None)
    for name, module in separate.conditions.items():
        assert any(float(p.grad.abs().max()) > 0 for p in module.parameters() if p.grad is not None), name
    assert all(float(block.cond_gate.grad.abs().min()) > 0 for block in separate.blocks)


def test_gate_merge_in_configs_and_checkpoints(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A bad gate_merge is a one-line error (config file, checkpoint); config.json carries the field and an old one
    without it loads as "lse"; open-gates refuses a separate model (its gate 1 is not plain full attention)."""
    from tests.conftest import tiny_config

    for overrides, words in [
        (["model.condition_gate=true", "model.gate_merge=both"], "'lse' or 'separate', not 'both'"),
        (["model.gate_merge=separate"], "needs model.condition_gate=true"),
    ]:
        with pytest.raises(InputError, match="model.gate_merge") as err:
            load_config(Path(__file__).parent.parent / "configs" / "tiny.yaml", overrides)
        assert words in str(err.value) and "\n" not in str(err.value)
    separate, _ = _separate_and_plain()
    with torch.no_grad():
        for block in separate.blocks:
            block.cond_gate.fill_(1.0)
    cfg = tiny_config(attention="full", condition_gate=True, gate_merge="separate")
    Pipeline.from_config(cfg, model=separate).save_pretrained(tmp_path / "separate")
    assert read_config(tmp_path / "separate").model.gate_merge == "separate"
    loaded = load_model(tmp_path / "separate")
    x, t, context = torch.randn(2, 12, 4, 8, 8), torch.rand(2), torch.randn(2, 5, 16)
    conditions = condition_inputs_tiny([True, True])
    with torch.no_grad():
        assert torch.equal(loaded(x, t, context, None, conditions), separate(x, t, context, None, conditions))
    open_gates = ["convert", "--from", "open-gates", str(tmp_path / "separate"), "--out", str(tmp_path / "no")]
    code, err = run_cli(open_gates, capsys)
    assert code == 2 and err.count("\n") == 1 and "separate" in err
    assert not (tmp_path / "no").exists()
    data = json.loads((tmp_path / "separate" / "config.json").read_text())
    del data["model"]["gate_merge"]
    data["model"]["condition_gate"] = True
    (tmp_path / "separate" / "config.json").write_text(json.dumps(data))
    assert read_config(tmp_path / "separate").model.gate_merge == "lse"  # written before the field existed
    data["model"]["gate_merge"] = "both"
    (tmp_path / "separate" / "config.json").write_text(json.dumps(data))
    code, err = run_cli(open_gates, capsys)
    assert code == 2 and err.count("\n") == 1 and "model.gate_merge must be 'lse' or 'separate'" in err


@pytest.mark.parametrize("attention,condition_layers,layers", [("isolated", (), 5), ("full", (1,), 4)])
def test_deepen_grows_a_model_that_computes_the_same(
    tmp_path: Path, capsys: pytest.CaptureFixture, attention: str, condition_layers: tuple, layers: int
) -> None:
    """`fulldit convert --from deepen`: 2 trained blocks grown to more compute the same video (every condition, a
    padding mask), the copies start from their block's weights, and one training step moves the copies' outputs."""
    from tests.conftest import tiny_config

    _, _, (x, t, context, mask, conditions) = _gated_and_plain()
    cfg = tiny_config(attention=attention, condition_layers=condition_layers)
    small = randomize(FullDiT(cfg.model))
    Pipeline.from_config(cfg, model=small).save_pretrained(tmp_path / "small")
    args = ["convert", "--from", "deepen", str(tmp_path / "small"), "--out", str(tmp_path / "big")]
    assert main([*args, "--layers", str(layers)]) == 0
    big = Pipeline.from_pretrained(tmp_path / "big", device="cpu").model
    assert big.cfg.layers == layers and len(big.blocks) == layers
    assert all(big.cfg.reads_conditions(j) == small.cfg.reads_conditions(j * 2 // layers) for j in range(layers))
    with torch.no_grad():
        assert _relative(big(x, t, context, mask, conditions), small(x, t, context, mask, conditions)) <= 1e-6
    copy = big.blocks[1]  # blocks.0 is old block 0, blocks.1 its copy
    assert torch.equal(copy.self_attn.q.weight, small.blocks[0].self_attn.q.weight)
    assert not copy.ffn[2].weight.any() and not copy.self_attn.o.weight.any()
    big(x, t, context, mask, conditions).square().mean().backward()
    assert float(copy.ffn[2].weight.grad.abs().max()) > 0 and float(copy.self_attn.o.weight.grad.abs().max()) > 0
    assert main([*args[:4], "--out", str(tmp_path / "no"), "--layers", "2"]) == 2
    assert "already has 2 blocks" in capsys.readouterr().err
    assert main(args[:4] + ["--out", str(tmp_path / "no")]) == 2
    assert not (tmp_path / "no").exists()


def test_deepen_grows_the_byte_text_encoder_without_changing_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`--text-layers`: a trained byte-level text encoder grown to more layers encodes every prompt as before (so the
    video is the same), its copies start from their layer's weights with zero output projections, and a training
    step reaches them; alone or with --layers."""
    from tests.conftest import tiny_config

    cfg = tiny_config()
    small = Pipeline.from_config(cfg, model=randomize(FullDiT(cfg.model)))
    randomize(small.text_encoder, seed=1)
    small.save_pretrained(tmp_path / "small")
    args = ["convert", "--from", "deepen", str(tmp_path / "small")]
    assert main([*args, "--out", str(tmp_path / "big"), "--text-layers", "3"]) == 0
    assert main([*args, "--out", str(tmp_path / "both"), "--text-layers", "2", "--layers", "3"]) == 0
    prompts = ["a red sphere in a room with brick walls", ""]
    with torch.no_grad():
        want, want_mask = small.text_encoder.encode(prompts)
    for name, layers in (("big", 3), ("both", 2)):
        big = Pipeline.from_pretrained(tmp_path / name, device="cpu")
        assert big.config.text.layers == layers and len(big.text_encoder.blocks) == layers
        with torch.no_grad():
            got, mask = big.text_encoder.encode(prompts)
        assert torch.equal(mask, want_mask) and _relative(got, want) <= 1e-6
    grown = Pipeline.from_pretrained(tmp_path / "big", device="cpu")
    assert grown.config.model == small.config.model  # --text-layers alone leaves the transformer as it was
    copy = grown.text_encoder.blocks[1]  # 1 old layer grown to 3: blocks.1 and blocks.2 are its copies
    assert torch.equal(copy.qkv.weight, small.text_encoder.blocks[0].qkv.weight)
    assert not copy.proj.weight.any() and not copy.mlp[2].weight.any()
    grown.text_encoder.encode(prompts)[0].square().mean().backward()
    assert float(copy.proj.weight.grad.abs().max()) > 0 and float(copy.mlp[2].weight.grad.abs().max()) > 0
    assert main([*args, "--out", str(tmp_path / "no"), "--text-layers", "1"]) == 2
    assert "already has 1 layers" in capsys.readouterr().err and not (tmp_path / "no").exists()


def test_deepen_lets_the_byte_text_encoder_read_longer_prompts(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`--text-max-length`: prompts that fitted encode exactly as before, longer ones are read whole (the old encoder
    cut them, with a warning), the new position rows start at the encoder's own scale, and a shorter length is an
    error that writes nothing."""
    from tests.conftest import tiny_config

    cfg = tiny_config()
    small = Pipeline.from_config(cfg, model=randomize(FullDiT(cfg.model)))
    randomize(small.text_encoder, seed=1)
    small.save_pretrained(tmp_path / "small")
    old = cfg.text.max_length
    args = ["convert", "--from", "deepen", str(tmp_path / "small")]
    assert main([*args, "--out", str(tmp_path / "long"), "--text-max-length", str(old + 64)]) == 0
    grown = Pipeline.from_pretrained(tmp_path / "long", device="cpu")
    assert grown.config.text.max_length == old + 64 and grown.config.model == small.config.model
    short, long = "a red sphere", "a solid blue box that slides; " * 2  # 12 and 60 bytes; tiny reads 30
    assert len(short) < old - 2 < len(long) < old + 62
    with torch.no_grad():
        want, want_mask = small.text_encoder.encode([short])
        got, mask = grown.text_encoder.encode([short])
        assert torch.equal(mask, want_mask) and _relative(got, want) <= 1e-6
        with pytest.warns(UserWarning, match="longer than its"):
            _, cut = small.text_encoder.encode([long])
        _, whole = grown.text_encoder.encode([long])
    assert int(cut.sum()) == old and int(whole.sum()) == len(long) + 2
    table, before = grown.text_encoder.pos_embed.weight.detach(), small.text_encoder.pos_embed.weight.detach()
    assert torch.equal(table[:old], before) and 0.01 < float(table[old:].std()) < 0.03
    assert main([*args, "--out", str(tmp_path / "no"), "--text-max-length", str(old)]) == 2
    assert f"already reads {old} tokens" in capsys.readouterr().err and not (tmp_path / "no").exists()
