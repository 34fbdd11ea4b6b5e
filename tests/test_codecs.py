from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from fulldit.codecs import Codec, CodecConfig, PixelCodec, build_codec
from fulldit.errors import InputError

MEAN = [0.1, -0.2, 0.3, 0.0]
STD = [1.5, 2.0, 0.5, 1.0]


def test_pixel_round_trip_and_shapes() -> None:
    codec = build_codec(CodecConfig(kind="pixel", stride=(2, 4, 4)))
    assert isinstance(codec, PixelCodec) and isinstance(codec, Codec)
    assert codec.latent_channels == 3 * 2 * 4 * 4
    video = torch.rand(2, 3, 6, 16, 24) * 2 - 1
    latents = codec.encode(video)
    assert latents.shape == (2, 96, 3, 4, 6)
    assert codec.latent_frames(6) == 3 and codec.latent_size(16, 24) == (4, 6)
    assert torch.equal(codec.decode(latents), video)


def test_pixel_latent_block_layout() -> None:
    """One latent holds exactly its (pt, ph, pw) pixel block, channel-major."""
    codec = PixelCodec((1, 2, 2))
    video = torch.arange(3 * 4 * 4, dtype=torch.float32).view(1, 3, 1, 4, 4)
    latents = codec.encode(video)
    assert torch.equal(latents[0, :4, 0, 0, 0], video[0, 0, 0, :2, :2].flatten())


def test_pixel_decode_clamps() -> None:
    codec = PixelCodec((1, 2, 2))
    assert codec.decode(torch.full((1, 12, 1, 2, 2), 5.0)).max() == 1.0


def test_pixel_invalid_input() -> None:
    codec = PixelCodec((2, 4, 4))
    assert not codec.valid_frames(3) and codec.valid_frames(4)
    with pytest.raises(InputError):
        codec.latent_frames(3)
    with pytest.raises(InputError):
        codec.latent_size(16, 18)
    with pytest.raises(InputError):
        codec.encode(torch.zeros(1, 3, 3, 16, 16))
    with pytest.raises(InputError):
        codec.encode(torch.zeros(1, 4, 2, 16, 16))
    with pytest.raises(InputError):
        PixelCodec((0, 4, 4))
    with pytest.raises(InputError):
        build_codec(CodecConfig(kind="jpeg"))


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    vae = AutoencoderKLWan(
        base_dim=8, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1, latents_mean=MEAN, latents_std=STD
    )
    path = tmp_path_factory.mktemp("wan_vae")
    vae.save_pretrained(path)
    return path


def test_wan_vae_codec(vae_dir: Path) -> None:
    from diffusers import AutoencoderKLWan

    codec = build_codec(CodecConfig(kind="wan-vae", path=str(vae_dir)))
    assert isinstance(codec, Codec)
    assert codec.stride == (4, 8, 8) and codec.latent_channels == 4
    assert codec.latent_frames(5) == 2 and codec.latent_size(32, 32) == (4, 4)

    torch.manual_seed(1)
    video = torch.rand(1, 3, 5, 32, 32) * 2 - 1
    latents = codec.encode(video)
    assert latents.shape == (1, 4, 2, 4, 4) and latents.dtype == torch.float32

    vae = AutoencoderKLWan.from_pretrained(vae_dir).eval()
    with torch.no_grad():
        z = vae.encode(video).latent_dist.mode()
        expected = (z - torch.tensor(MEAN).view(1, 4, 1, 1, 1)) / torch.tensor(STD).view(1, 4, 1, 1, 1)
        torch.testing.assert_close(latents, expected)
        torch.testing.assert_close(codec.decode(latents), vae.decode(z).sample.clamp(-1, 1))

    decoded = codec.decode(latents)
    assert decoded.shape == video.shape
    assert decoded.abs().max() <= 1.0


def test_wan_vae_codec_invalid_input(vae_dir: Path) -> None:
    codec = build_codec(CodecConfig(kind="wan-vae", path=str(vae_dir)))
    assert codec.valid_frames(1) and codec.valid_frames(9) and not codec.valid_frames(4)
    with pytest.raises(InputError):
        codec.latent_frames(4)
    with pytest.raises(InputError):
        codec.latent_size(32, 36)
    with pytest.raises(InputError):
        codec.encode(torch.zeros(1, 3, 4, 32, 32))


def test_wan_vae_pipeline_layout(vae_dir: Path, tmp_path: Path) -> None:
    """A diffusers pipeline directory works too: the VAE is found in its vae/ folder."""
    (tmp_path / "vae").symlink_to(vae_dir, target_is_directory=True)
    assert build_codec(CodecConfig(kind="wan-vae", path=str(tmp_path))).latent_channels == 4


def test_wan_vae_bad_paths(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(InputError, match=re.escape(str(missing))):
        build_codec(CodecConfig(kind="wan-vae", path=str(missing)))
    with pytest.raises(InputError, match=re.escape(str(tmp_path))):
        build_codec(CodecConfig(kind="wan-vae", path=str(tmp_path)))
    with pytest.raises(InputError):
        build_codec(CodecConfig(kind="wan-vae", path=""))
    (tmp_path / "config.json").write_text('{"_class_name": "AutoencoderKL"}')
    with pytest.raises(InputError, match="AutoencoderKL"):
        build_codec(CodecConfig(kind="wan-vae", path=str(tmp_path)))
