"""`fulldit convert --from fulldit --to wan2.1`: a text-to-video checkpoint written as Wan2.1's original release reads
back through `fulldit convert --from wan2.1` bit for bit; config.json has WanModel's keys; large weights shard with an
index; a checkpoint with conditions, or one Wan2.1's code would compute differently, is a one-line error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from fulldit.checkpoint import load_state, read_config
from fulldit.cli import main
from fulldit.convert import convert_wan
from tests.test_convert import WAN, original_name, write_tokenizer_and_umt5

# WanModel's arguments for the tiny model (tests/test_convert.py's WAN), written out independently of the exporter.
EXPECTED_CONFIG = {
    "_class_name": "WanModel",
    "model_type": "t2v",
    "patch_size": [1, 2, 2],
    "text_len": 512,
    "in_dim": 4,
    "dim": 24,
    "ffn_dim": 48,
    "freq_dim": 32,
    "text_dim": 32,
    "out_dim": 4,
    "num_heads": 2,
    "num_layers": 2,
    "window_size": [-1, -1],
    "qk_norm": True,
    "cross_attn_norm": True,
    "eps": 1e-6,
}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random diffusers Wan pipeline: transformer/ (norms perturbed, so none is 1 or 0), vae/, text_encoder/."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    root = tmp_path_factory.mktemp("pipeline")
    torch.manual_seed(0)
    model = WanTransformer3DModel(**WAN)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.2)
    model.save_pretrained(root / "transformer")
    AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1).save_pretrained(root / "vae")
    write_tokenizer_and_umt5(root)
    (root / "model_index.json").write_text(json.dumps({"_class_name": "WanPipeline"}))
    return root


@pytest.fixture(scope="module")
def backbone(pipeline: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The converter's text-to-video checkpoint of the pipeline: no conditions, float32."""
    out = tmp_path_factory.mktemp("backbone") / "ckpt"
    convert_wan(pipeline, out, conditions=(), store="float32", text_dtype="float32")
    return out


@pytest.fixture(scope="module")
def release(backbone: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`backbone` exported by the CLI as Wan2.1's release (one weight file at the default shard size)."""
    out = tmp_path_factory.mktemp("release") / "wan"
    assert main(["convert", "--from", "fulldit", str(backbone), "--to", "wan2.1", "--out", str(out)]) == 0
    return out


def file_tensors(directory: Path) -> dict[str, torch.Tensor]:
    tensors = {}
    for path in sorted(directory.glob("diffusion_pytorch_model*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            tensors.update({k: f.get_tensor(k) for k in f.keys()})
    return tensors


def test_release_converts_back_bit_for_bit(pipeline: Path, backbone: Path, release: Path, tmp_path: Path) -> None:
    """Wan's original names (tests/test_convert.py's own table), companions beside them, and `fulldit convert --from
    wan2.1` with --vae/--text-encoder pointing into the release gives the first conversion's weights exactly."""
    from diffusers import WanTransformer3DModel

    reference = WanTransformer3DModel.from_pretrained(pipeline / "transformer").state_dict()
    written = file_tensors(release)
    assert sorted(written) == sorted(original_name(k) for k in reference)  # no gate, nothing FullDiT added
    assert all(torch.equal(written[original_name(k)], v) for k, v in reference.items())
    assert (release / "diffusion_pytorch_model.safetensors").is_file()
    assert not (release / "diffusion_pytorch_model.safetensors.index.json").exists()
    for part, file in [("vae", "config.json"), ("text_encoder", "config.json"), ("tokenizer", "tokenizer.json")]:
        assert (release / part / file).is_file()
    assert not list((release / "tokenizer").glob("*.safetensors"))

    back = tmp_path / "back"
    args = ["convert", "--from", "wan2.1", str(release), "--vae", str(release / "vae"), "--text-encoder", str(release)]
    assert main(args + ["--conditions", "--dtype", "float32", "--text-dtype", "float32", "--out", str(back)]) == 0
    first, again = load_state(backbone), load_state(back)
    assert sorted(first) == sorted(again)
    assert all(first[k].dtype == again[k].dtype and torch.equal(first[k], again[k]) for k in first)
    cfg_first, cfg_again = read_config(backbone), read_config(back)
    assert cfg_again.model == cfg_first.model and cfg_again.text.max_length == cfg_first.text.max_length
    assert cfg_again.codec.path == str((release / "vae").resolve()) and cfg_again.text.path == str(release.resolve())


def test_config_has_wans_original_keys(
    backbone: Path, release: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """config.json is WanModel's arguments with the model's values; the summary says how to read the release back."""
    assert json.loads((release / "config.json").read_text()) == EXPECTED_CONFIG
    out = tmp_path / "again"
    capsys.readouterr()
    assert main(["convert", "--from", "fulldit", str(backbone), "--to", "wan2.1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"--vae {out / 'vae'} --text-encoder {out} " in printed and "dim 24, 2 layers, 2 heads" in printed


def test_shards_with_an_index(backbone: Path, release: Path, tmp_path: Path) -> None:
    """A small --shard-mb writes numbered shards and the index Wan's loaders read; the tensors are the single file's,
    and bfloat16 storage keeps the fp32-run parts (modulation, norms, time embedding) in float32."""
    out = tmp_path / "sharded"
    args = ["convert", "--from", "fulldit", str(backbone), "--to", "wan2.1", "--out", str(out), "--shard-mb", "0.01"]
    assert main(args) == 0
    shards = sorted(out.glob("diffusion_pytorch_model-*-of-*.safetensors"))
    assert len(shards) >= 3 and not (out / "diffusion_pytorch_model.safetensors").exists()
    assert shards[0].name == f"diffusion_pytorch_model-00001-of-{len(shards):05d}.safetensors"
    index = json.loads((out / "diffusion_pytorch_model.safetensors.index.json").read_text())
    single = file_tensors(release)
    assert sorted(index["weight_map"]) == sorted(single)
    assert set(index["weight_map"].values()) == {shard.name for shard in shards}
    for shard in shards:
        with safe_open(str(shard), framework="pt") as f:
            assert sorted(f.keys()) == sorted(k for k, v in index["weight_map"].items() if v == shard.name)
            assert all(torch.equal(f.get_tensor(k), single[k]) for k in f.keys())
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in single.values())

    half = tmp_path / "half"
    args = ["convert", "--from", "fulldit", str(backbone), "--to", "wan2.1", "--out", str(half), "--dtype", "bfloat16"]
    assert main(args) == 0
    dtypes = {k: v.dtype for k, v in file_tensors(half).items()}
    assert dtypes["blocks.0.ffn.0.weight"] == dtypes["head.head.weight"] == torch.bfloat16
    assert dtypes["blocks.0.modulation"] == dtypes["time_embedding.0.weight"] == torch.float32


def edited(backbone: Path, path: Path, change: dict[str, dict]) -> Path:
    """A copy of the backbone checkpoint with config.json sections updated."""
    shutil.copytree(backbone, path)
    data = json.loads((path / "config.json").read_text())
    for section, values in change.items():
        data[section].update(values)
    (path / "config.json").write_text(json.dumps(data))
    return path


def test_refusals_are_one_line(
    pipeline: Path, backbone: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Conditions, x0 prediction, another rotary theta, a missing directory, --to without --from fulldit: exit 2,
    one line naming the problem, nothing written."""
    with_conditions = tmp_path / "with-conditions"
    convert_wan(pipeline, with_conditions, conditions=("camera",), store="float32", text_dtype="float32")
    cases = [
        (with_conditions, "fulldit", "model.conditions is ['camera']"),
        (edited(backbone, tmp_path / "x0", {"flow": {"prediction": "x0"}}), "fulldit", "flow.prediction is 'x0'"),
        (edited(backbone, tmp_path / "theta", {"model": {"rope_theta": 500.0}}), "fulldit", "model.rope_theta is 500"),
        (tmp_path / "nope", "fulldit", "no such directory"),
        (backbone, "wan2.1", "--to wan2.1 goes with --from fulldit"),
    ]
    for src, source_format, words in cases:
        capsys.readouterr()
        out = tmp_path / "out"
        code = main(["convert", "--from", source_format, str(src), "--to", "wan2.1", "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and words in err, (words, err)
        assert not out.exists() and not list(tmp_path.glob(".out.*"))


def test_companions_left_out_with_a_note(backbone: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A codec that is not a Wan VAE and a text encoder directory that is gone: no vae/, text_encoder/, tokenizer/,
    and the summary tells the user to pass --vae and --text-encoder."""
    src = edited(backbone, tmp_path / "bare", {"codec": {"kind": "pixel"}, "text": {"path": str(tmp_path / "gone")}})
    capsys.readouterr()
    assert main(["convert", "--from", "fulldit", str(src), "--to", "wan2.1", "--out", str(tmp_path / "wan")]) == 0
    printed = capsys.readouterr().out
    written = sorted(p.name for p in (tmp_path / "wan").iterdir())
    assert written == ["config.json", "diffusion_pytorch_model.safetensors"]
    assert "no vae/ written" in printed and "'pixel'" in printed and "--vae VAE_DIR" in printed
    assert "no text_encoder/ written" in printed and "gone" in printed and "--text-encoder UMT5_DIR" in printed
