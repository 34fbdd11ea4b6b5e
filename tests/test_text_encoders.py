from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from fulldit.errors import InputError
from fulldit.text_encoders import (
    ByteTextEncoder,
    T5TextEncoder,
    TextEncoder,
    TextEncoderConfig,
    build_text_encoder,
)

SENTENCES = [
    "a red cube rolls to the left",
    "the camera pans slowly over a blue sphere",
    "a person walks through a green field at dawn",
]


def byte_encoder(**kwargs: int) -> ByteTextEncoder:
    torch.manual_seed(0)
    cfg = TextEncoderConfig(kind="byte", dim=32, layers=2, heads=4, max_length=kwargs.get("max_length", 64))
    encoder = build_text_encoder(cfg)
    assert isinstance(encoder, ByteTextEncoder) and isinstance(encoder, TextEncoder)
    return encoder


def test_byte_shapes_and_mask() -> None:
    encoder = byte_encoder()
    features, mask = encoder.encode(["ab", "hello"])
    assert features.shape == (2, 7, 32) and features.dtype == torch.float32
    assert mask.tolist() == [[True] * 4 + [False] * 3, [True] * 7]
    assert torch.all(features[0, 4:] == 0)
    assert features[0, :4].abs().sum(-1).min() > 0


def test_byte_padding_invariance() -> None:
    encoder = byte_encoder()
    alone, _ = encoder.encode(["short prompt"])
    batched, _ = encoder.encode(["short prompt", "a much longer prompt that forces plenty of padding"])
    torch.testing.assert_close(batched[0, : alone.shape[1]], alone[0], atol=1e-5, rtol=0)


def test_byte_deterministic_for_seed() -> None:
    a, _ = byte_encoder().encode(["same seed"])
    b, _ = byte_encoder().encode(["same seed"])
    assert torch.equal(a, b)


def test_byte_truncation_and_empty_prompt() -> None:
    encoder = byte_encoder(max_length=8)
    features, mask = encoder.encode(["x" * 100, ""])
    assert features.shape == (2, 8, 32)
    assert mask[0].all() and mask[1].tolist() == [True, True] + [False] * 6
    with pytest.raises(InputError):
        encoder.encode("not a list")  # type: ignore[arg-type]
    with pytest.raises(InputError):
        encoder.encode([])


def test_byte_gradients_flow() -> None:
    encoder = byte_encoder()
    features, _ = encoder.encode(["gradient", "check"])
    features.square().sum().backward()
    for name, param in encoder.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_byte_config_errors() -> None:
    with pytest.raises(InputError):
        build_text_encoder(TextEncoderConfig(kind="byte", dim=30, heads=4))
    with pytest.raises(InputError):
        build_text_encoder(TextEncoderConfig(kind="clip"))


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(SENTENCES, trainers.WordLevelTrainer(special_tokens=["<pad>", "</s>", "<unk>"]))
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")

    torch.manual_seed(0)
    config = UMT5Config(
        vocab_size=100, d_model=32, d_ff=64, num_layers=2, num_heads=2, d_kv=16, pad_token_id=0, eos_token_id=1
    )
    path = tmp_path_factory.mktemp("umt5")
    fast.save_pretrained(path)
    UMT5EncoderModel(config).save_pretrained(path)
    return path


def test_t5_encodes_with_zero_padding(t5_dir: Path) -> None:
    from transformers import AutoTokenizer, UMT5EncoderModel

    encoder = build_text_encoder(TextEncoderConfig(kind="t5", path=str(t5_dir), max_length=16))
    assert isinstance(encoder, T5TextEncoder) and isinstance(encoder, TextEncoder) and encoder.dim == 32
    prompts = ["a red cube", SENTENCES[1], ""]
    features, mask = encoder.encode(prompts)
    assert features.shape == (3, 9, 32) and features.dtype == torch.float32  # 8 words + </s>
    assert mask.sum(1).tolist() == [4, 9, 1]
    assert torch.all(features[~mask] == 0)

    model = UMT5EncoderModel.from_pretrained(t5_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(t5_dir)
    for i, prompt in enumerate(prompts):
        ids = tokenizer([prompt], return_tensors="pt")["input_ids"]
        with torch.no_grad():
            expected = model(input_ids=ids).last_hidden_state[0]
        torch.testing.assert_close(features[i, : ids.shape[1]], expected, atol=1e-5, rtol=1e-5)


def test_t5_pad_to_max_length(t5_dir: Path) -> None:
    cfg = TextEncoderConfig(kind="t5", path=str(t5_dir), max_length=16, pad_to_max_length=True)
    padded, mask = build_text_encoder(cfg).encode(["a red cube", SENTENCES[1]])
    assert padded.shape == (2, 16, 32) and mask.shape == (2, 16) and mask.all()
    assert torch.all(padded[0, 4:] == 0) and torch.all(padded[1, 9:] == 0)
    unpadded, _ = build_text_encoder(TextEncoderConfig(kind="t5", path=str(t5_dir), max_length=16)).encode(
        ["a red cube", SENTENCES[1]]
    )
    torch.testing.assert_close(padded[:, :9], unpadded)


def test_t5_truncates_to_max_length(t5_dir: Path) -> None:
    encoder = build_text_encoder(TextEncoderConfig(kind="t5", path=str(t5_dir), max_length=4))
    features, mask = encoder.encode([SENTENCES[2]])
    assert features.shape == (1, 4, 32) and mask.all()


def test_t5_pipeline_layout(t5_dir: Path, tmp_path: Path) -> None:
    """A diffusers pipeline directory works too: text_encoder/ and tokenizer/ are found inside it."""
    (tmp_path / "text_encoder").symlink_to(t5_dir, target_is_directory=True)
    (tmp_path / "tokenizer").symlink_to(t5_dir, target_is_directory=True)
    assert build_text_encoder(TextEncoderConfig(kind="t5", path=str(tmp_path))).dim == 32


def test_t5_bad_paths(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(InputError, match=re.escape(str(missing))):
        build_text_encoder(TextEncoderConfig(kind="t5", path=str(missing)))
    with pytest.raises(InputError, match=re.escape(str(tmp_path))):
        build_text_encoder(TextEncoderConfig(kind="t5", path=str(tmp_path)))
    with pytest.raises(InputError):
        build_text_encoder(TextEncoderConfig(kind="t5", path=""))
