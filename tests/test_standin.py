"""Issue #15's stand-in backbone chain at toy sizes on the CPU, in one process (bench/standin_backbone.sh runs the same
pieces as commands on a GPU): VAE and UMT5 made here -> a text-to-video backbone -> Wan2.1's release layout -> the
user's conversion with conditions -> six fine-tunes -> FullBench videos, text-only drift, CPU scoring, the table.

The point of the gate is checked on the real chain: the converted model (gates at 0) given camera, depth and a
reference generates the backbone's own text-only clip; the no-gate start (FullDiT's appended conditions) does not.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from fulldit.checkpoint import load_state, read_config
from fulldit.cli import main as fulldit
from fulldit.codecs.vae import WanVAECodec
from fulldit.eval.fullbench import load_bench
from fulldit.generate import Pipeline
from fulldit.text_encoders import T5TextEncoder
from tests.conftest import bench_script

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = [f"{gate}-x{scale}" for gate in ("nogate", "separate", "lse") for scale in (1, 30)] + ["lse-open-x30"]
SCORED = ["lse-x30"]  # FullBench videos generated and scored for this one (time); text-only clips for all
# toy sizes; the VAE in float32 (the configs encode in bf16 for the GPU; bf16 convolutions are slow on CPUs)
TINY = ["model.dim=32", "model.heads=2", "model.layers=2", "model.ffn_dim=64", "model.in_channels=4",
        "model.text_dim=32", "model.freq_dim=32", "train.batch_size=2", "train.warmup=1", "train.precision=fp32",
        "train.data.workers=0", "train.validate_every=0", "train.data.frames=5", "train.data.height=32",
        "train.data.width=32", "sample.frames=5", "sample.height=32", "sample.width=32", "sample.steps=2",
        "codec.dtype=float32"]  # fmt: skip
GATE_OVERRIDES = {"nogate": ["model.condition_gate=false"], "separate": ["model.gate_merge=separate"],
                  "lse": ["model.gate_merge=lse"],
                  "lse-open": ["model.gate_merge=lse", "train.new_modules=[conditions]"]}  # fmt: skip
START = {"nogate": "fd-nogate", "separate": "fd", "lse": "fd", "lse-open": "fd-open"}  # each variant's start


def run(args: list[str]) -> None:
    assert fulldit([str(a) for a in args]) == 0, args


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every stage of bench/standin_backbone.sh at toy sizes, its folder layout (WORK/vae, umt5, t2v, wan, fd, ...)."""
    w = tmp_path_factory.mktemp("standin")
    table = bench_script("standin_table")
    bench_script("train_wan_vae").main(["--device", "cpu", "--steps", "2", "--batch", "1", "--frames", "5",
                                        "--size", "32", "--base-dim", "8", "--z-dim", "4", "--heldout", "1",
                                        "--stats-clips", "1", "--warmup", "1", "--out", str(w / "vae")])  # fmt: skip
    bench_script("make_umt5").main(["--out", str(w / "umt5"), "--dim", "32", "--layers", "1", "--head-dim", "16",
                                    "--captions", "20"])  # fmt: skip
    run(["synth", "--bench", "--out", w / "fullbench", "--cases", "2", "--combos", "camera", "depth", "--frames", "5",
         "--size", "32x32", "--device", "cpu"])  # fmt: skip
    # 3 steps at lr 0.3: far enough from the zero-initialised block gates (adaLN-Zero) that attention, and so the
    # conditions the no-gate start appends, changes the clips visibly
    run(["train", "--config", ROOT / "configs/standin-t2v.yaml", "--out", w / "t2v", "--device", "cpu",
         f"codec.path={w / 'vae'}", f"text.path={w / 'umt5'}", "train.steps=3", "train.lr=0.3", "train.min_lr=0",
         *TINY])  # fmt: skip
    run(["convert", "--from", "fulldit", w / "t2v/model", "--to", "wan2.1", "--out", w / "wan"])
    wan = w / "wan"  # converted back as a user converts Wan2.1's release (the command the export prints)
    run(["convert", "--from", "wan2.1", wan, "--vae", wan / "vae", "--text-encoder", wan, "--out", w / "fd"])
    run(["convert", "--from", "wan2.1", wan, "--vae", wan / "vae", "--text-encoder", wan, "--gate", "none",
         "--out", w / "fd-nogate"])  # fmt: skip
    run(["convert", "--from", "wan2.1", wan, "--vae", wan / "vae", "--text-encoder", wan, "--gate-init", "0.05",
         "--out", w / "fd-open"])  # fmt: skip
    for v in VARIANTS:
        gate, scale = v.split("-x")
        init = w / START[gate]
        run(["train", "--config", ROOT / "configs/standin-fulldit.yaml", "--out", w / "ft" / v, "--init", init,
             "--device", "cpu", *GATE_OVERRIDES[gate], f"train.new_module_lr_scale={scale}", "train.steps=2",
             "train.save_every=1", *TINY])  # fmt: skip
    ema = {v: w / "ft" / v / "checkpoints/step_00000002/ema" for v in VARIANTS}
    for v in SCORED:
        run(["eval", "--checkpoint", ema[v], "--bench", w / "fullbench", "--out", w / "eval" / v / "step2", "--cases",
             "1", "--combos", "camera", "depth", "--steps", "2", "--device", "cpu", "--generate-only"])  # fmt: skip
    text = ["textonly", "--bench", str(w / "fullbench"), "--clips", "1", "--steps", "2", "--device", "cpu"]
    table.main([*text, "--save-clips", "--run", str(w / "fd"), str(w / "eval/backbone/textonly")])
    runs = [a for v in VARIANTS for a in ("--run", str(ema[v]), str(w / "eval" / v / "step2" / "textonly"))]
    table.main([*text, "--reference", str(w / "eval/backbone/textonly"), *runs])
    table.main(["score", "--bench", str(w / "fullbench"), *(str(w / "eval" / v / "step2") for v in SCORED)])
    table.main(["table", str(w)])
    return w


def tensors(directory: Path, pattern: str) -> dict[str, torch.Tensor]:
    out = {}
    for path in sorted(directory.glob(pattern)):
        with safe_open(str(path), framework="pt") as f:
            out.update({k: f.get_tensor(k) for k in f.keys()})
    return out


def test_vae_umt5_and_backbone_load(chain: Path) -> None:
    codec = WanVAECodec(chain / "vae")
    assert codec.latent_channels == 4 and codec.stride == (4, 8, 8)
    encoder = T5TextEncoder(chain / "umt5", max_length=128, pad_to_max_length=True)
    caption = load_bench(chain / "fullbench", ["camera"], 1)[1][0].clip.caption
    ids = encoder.tokenizer([caption])["input_ids"][0]
    assert encoder.tokenizer.unk_token_id not in ids and ids[-1] == encoder.tokenizer.eos_token_id  # the world's words
    hidden, mask = encoder.encode([caption])
    assert hidden.shape == (1, 128, 32) and bool(mask.all()) and float(hidden[0, len(ids) :].abs().max()) == 0
    cfg = read_config(chain / "t2v/model")
    assert cfg.model.conditions == () and not cfg.model.condition_gate and cfg.flow.prediction == "velocity"


def test_export_is_wan21_release_layout(chain: Path) -> None:
    """config.json (WanModel's arguments), one weight file of the backbone's tensors bit for bit, no gates, and the
    diffusers VAE, UMT5 and tokenizer beside it."""
    wan = chain / "wan"
    assert sorted(p.name for p in wan.iterdir()) == [
        "config.json", "diffusion_pytorch_model.safetensors", "text_encoder", "tokenizer", "vae"]  # fmt: skip
    config = json.loads((wan / "config.json").read_text())
    assert config["_class_name"] == "WanModel" and config["model_type"] == "t2v"
    assert (config["dim"], config["num_layers"], config["num_heads"], config["in_dim"], config["out_dim"]) == (
        32, 2, 2, 4, 4)  # fmt: skip
    assert (config["text_dim"], config["text_len"], config["ffn_dim"]) == (32, 128, 64)
    backbone, written = load_state(chain / "t2v/model"), tensors(wan, "diffusion_pytorch_model*.safetensors")
    assert sorted(written) == sorted(backbone) and not any("cond_gate" in k for k in written)
    assert all(torch.equal(written[k], backbone[k]) for k in backbone)
    assert (wan / "vae/config.json").is_file() and (wan / "text_encoder/config.json").is_file()
    assert (wan / "tokenizer/tokenizer.json").is_file() and not list((wan / "tokenizer").glob("*.safetensors"))


def test_converted_back_with_closed_gates(chain: Path) -> None:
    cfg = read_config(chain / "fd")
    assert cfg.model.condition_gate and cfg.model.conditions == ("camera", "reference", "depth")
    assert cfg.codec.path == str((chain / "wan/vae").resolve()) and cfg.text.path == str((chain / "wan").resolve())
    state, backbone = load_state(chain / "fd"), load_state(chain / "t2v/model")
    assert all(torch.equal(state[k], v) for k, v in backbone.items())
    assert all(float(v.abs().max()) == 0 for k, v in state.items() if k.endswith("cond_gate"))
    opened = read_config(chain / "fd-nogate")
    assert not opened.model.condition_gate and opened.model.conditions == cfg.model.conditions
    assert not any(k.endswith("cond_gate") for k in load_state(chain / "fd-nogate"))
    ajar = load_state(chain / "fd-open")  # the same model, its gates at 0.05
    assert all(torch.equal(ajar[k], v) for k, v in state.items() if not k.endswith("cond_gate"))
    assert all(torch.equal(v, torch.full_like(v, 0.05)) for k, v in ajar.items() if k.endswith("cond_gate"))


def test_gate_zero_reproduces_the_backbone_and_no_gate_does_not(chain: Path) -> None:
    """With camera, depth and a reference given, the converted model's clip is the backbone's text-only clip (the
    gate's point); the no-gate start (plain full attention) differs. Text alone, both are the backbone."""
    case = load_bench(chain / "fullbench", ["camera"], 1)[1][0]
    clip = case.clip
    sampling = dict(steps=2, shift=3.0, guidance=3.0, text_guidance=3.0)  # the converted ones carry Wan2.1's
    common = dict(prompt=clip.caption, frames=5, height=32, width=32, seed=3, **sampling)
    given = dict(camera=clip.camera, depth=clip.depth, references=clip.references[:1])
    gated = Pipeline.from_pretrained(chain / "fd", device="cpu")
    plain = Pipeline.from_pretrained(chain / "fd-nogate", device="cpu")
    pretrained = Pipeline.from_pretrained(chain / "t2v/model", device="cpu")
    pretrained.codec = gated.codec  # the same VAE (the release's copy), decoding in float32 as the converter sets it
    backbone = pretrained.generate(**common)
    assert float((gated.generate(**common, **given) - backbone).abs().max()) < 1e-4
    assert float((gated.generate(**common) - backbone).abs().max()) < 1e-4
    assert float((plain.generate(**common) - backbone).abs().max()) < 1e-4
    assert float((plain.generate(**common, **given) - backbone).abs().max()) > 1e-3


def test_fine_tunes_save_their_variants(chain: Path) -> None:
    for v in VARIANTS:
        gate, scale = v.split("-x")
        root = chain / "ft" / v / "checkpoints"
        assert [p.name for p in sorted(root.glob("step_*"))] == ["step_00000001", "step_00000002"]
        cfg = read_config(root / "step_00000002/ema")
        assert cfg.model.condition_gate == (gate != "nogate")
        assert gate == "nogate" or cfg.model.gate_merge == gate.removesuffix("-open")
        trainer = json.loads((root / "step_00000002/trainer.json").read_text())
        assert trainer["lr_scales"] == ([1.0] if scale == "1" else [1.0, 30.0])
        assert trainer["init"] == str((chain / START[gate]).resolve())


def test_fullbench_videos_scores_and_table(chain: Path) -> None:
    for v in SCORED:
        report = chain / "eval" / v / "step2"
        videos = sorted(str(p.relative_to(report / "videos")) for p in (report / "videos").glob("*/*.mp4"))
        assert videos == ["camera-000/given.mp4", "camera-000/other-path.mp4", "camera-000/withheld.mp4",
                          "depth-000/given.mp4", "depth-000/withheld.mp4"]  # fmt: skip
        metrics = json.loads((report / "metrics.json").read_text())
        assert {r["metric"] for r in metrics["effect"]} >= {"flow_epe", "depth_inv_mae"}
    rows = {(r["variant"], r["step"]): r for r in map(json.loads, (chain / "table.jsonl").read_text().splitlines())}
    assert sorted(rows) == sorted((v, 2) for v in VARIANTS)
    for (v, _), r in rows.items():
        assert r["text_clips"] == 1 and 0 < r["drift_psnr"] <= 100 and r["text_psnr_gt_delta"] is not None
        assert (r["gate_mean"] is None) == v.startswith("nogate")
        assert (r["flow_ratio"] is not None and r["depth_ratio"] is not None) == (v in SCORED)
        assert (r["camera_psnr_gain"] is not None and r["depth_psnr_gain"] is not None) == (v in SCORED)
    for v in SCORED:  # the gain is the given arm's PSNR minus the baseline arm's, from the report's own combos
        combos = json.loads((chain / "eval" / v / "step2" / "metrics.json").read_text())["combos"]
        want = combos["depth"]["given"]["psnr"]["mean"] - combos["depth"]["withheld"]["psnr"]["mean"]
        assert rows[v, 2]["depth_psnr_gain"] == pytest.approx(want)
    for gate in ("separate", "lse"):  # the new-module rate reaches the gates: Adam moves each ~lr a step
        assert rows[f"{gate}-x30", 2]["gate_raw_abs_mean"] > 10 * rows[f"{gate}-x1", 2]["gate_raw_abs_mean"]
    ajar = rows["lse-open-x30", 2]  # gates from 0.05, at the backbone's rate (not train.new_modules): barely moved
    assert abs(ajar["gate_mean"] - 0.05) < 0.1 * abs(rows["lse-x30", 2]["gate_raw_abs_mean"]) and ajar["gate_open"] == 1
    text = (chain / "table.md").read_text()
    assert all(f"| {v.split('-x')[0]} | {v.split('-x')[1]}x | 2 |" in text for v in VARIANTS)
    reference = json.loads((chain / "eval/backbone/textonly/textonly.json").read_text())
    assert reference["gates"]["max"] == 0 and reference["drift_psnr"] is None


def test_configs_fit_the_converter() -> None:
    """standin-fulldit.yaml's model and text sections are what `fulldit convert --from wan2.1` writes for the release of
    a standin-t2v.yaml backbone (so --init loads it tensor for tensor), and the defaults of the VAE and UMT5 scripts
    fit standin-t2v.yaml."""
    from fulldit.convert import wan_config
    from fulldit.convert.export_wan import architecture
    from fulldit.train.config import load_train_config

    t2v, _ = load_train_config(ROOT / "configs/standin-t2v.yaml")
    fine, tcfg = load_train_config(ROOT / "configs/standin-fulldit.yaml")
    converted = wan_config(architecture(t2v), "", "", ("camera", "reference", "depth"))
    assert fine.model == converted.model
    assert dataclasses.replace(fine.text, dtype=converted.text.dtype) == converted.text
    assert fine.text.dtype == t2v.text.dtype == "bfloat16"  # the converter's --text-dtype default
    assert fine.flow.prediction == t2v.flow.prediction == "velocity" and fine.codec.kind == t2v.codec.kind == "wan-vae"
    assert tcfg.steps % tcfg.save_every == 0 and tcfg.keep * tcfg.save_every >= tcfg.steps  # steps 100, 200, 400 kept
    vae, umt5 = (
        bench_script("train_wan_vae").parse_args(["--out", "x"]),
        bench_script("make_umt5").parse_args(["--out", "x"]),
    )
    assert (vae.z_dim, vae.frames, vae.size, umt5.dim) == (t2v.model.in_channels, 17, 128, t2v.model.text_dim)
    assert (t2v.sample.frames, t2v.sample.height) == (tcfg.data.frames, tcfg.data.height) == (17, 128)


def test_driver_parses() -> None:
    import subprocess

    assert subprocess.run(["bash", "-n", str(ROOT / "bench/standin_backbone.sh")]).returncode == 0


def test_base_packs_the_release_for_a_later_run(chain: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`standin_table.py base`: WORK/wan in parts that concatenate to a tar of the same release, the VAE in bf16, which
    converts as the chain's later stages convert it."""
    table = bench_script("standin_table")
    monkeypatch.setattr(table, "PART_BYTES", 64 * 1024)  # several parts even at toy sizes
    parts = table.main(["base", str(chain)])
    assert len(parts) > 1 and all(p.stat().st_size <= 64 * 1024 for p in parts)
    assert [p.name for p in parts] == sorted(p.name for p in parts)  # `cat part-*` order
    (tmp_path / "base.tar").write_bytes(b"".join(p.read_bytes() for p in parts))
    import tarfile

    with tarfile.open(tmp_path / "base.tar") as tar:
        tar.extractall(tmp_path / "work", filter="data")
    wan, got = chain / "wan", tmp_path / "work" / "wan"
    assert sorted(str(p.relative_to(got)) for p in got.rglob("*")) == sorted(
        str(p.relative_to(wan)) for p in wan.rglob("*")
    )
    same, vae = tensors(got, "*.safetensors"), tensors(wan, "*.safetensors")
    assert same.keys() == vae.keys() and all(torch.equal(same[k], vae[k]) for k in same)  # the transformer as it was
    small, full = tensors(got / "vae", "*.safetensors"), tensors(wan / "vae", "*.safetensors")
    assert all(small[k].dtype == torch.bfloat16 and torch.equal(small[k], full[k].bfloat16()) for k in full)
    run(["convert", "--from", "wan2.1", got, "--vae", got / "vae", "--text-encoder", got, "--out", tmp_path / "fd"])
    converted, before = tensors(tmp_path / "fd", "model*.safetensors"), tensors(chain / "fd", "model*.safetensors")
    assert converted.keys() == before.keys() and all(torch.equal(converted[k], before[k]) for k in before)
    with pytest.raises(Exception, match="no Wan2.1 release"):
        table.main(["base", str(tmp_path / "empty")])
