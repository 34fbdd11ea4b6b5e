"""A small random-init UMT5 encoder and a word-level tokenizer of the synthetic world's captions, made offline.

Issue #15's stand-in backbone takes Wan2.1's text path (`text.kind: t5`, UMT5 features zero-padded to `max_length`)
without Wan2.1's 5.7B-parameter UMT5-XXL, which cannot be downloaded here. The encoder is transformers'
`UMT5EncoderModel` at a small width, randomly initialised and never trained: frozen random features still tell the
words and their order apart, and the transformer's text embedding learns to read them (as it learns to read the
real UMT5's). The tokenizer is the tests' offline recipe (tests/test_convert.py): a `tokenizers` WordLevel model on
whitespace/punctuation with T5's `</s>` appended, trained on the world's vocabulary: every word of the caption
templates' tables (colours, patterns, shapes, walls, floors, camera verbs and directions) plus the captions of
`--captions` planned clips (no rendering), so every caption the world writes tokenizes without `<unk>`.

    python bench/make_umt5.py --out checkpoints/standin-umt5                 # d_model 256, 2 layers
    python bench/make_umt5.py --out /tmp/umt5 --dim 32 --layers 1 --captions 20   # tests

Writes OUT/text_encoder/ (config.json + model.safetensors) and OUT/tokenizer/ (tokenizer.json ...), a diffusers
pipeline's layout, so `text.path: OUT` loads it (`fulldit.text_encoders.find_t5_dirs`) and `fulldit convert --to
wan2.1` copies both beside the release. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import torch

from fulldit.atomic import atomic_dir
from fulldit.errors import InputError

SPECIALS = ["<pad>", "</s>", "<unk>"]  # ids 0, 1, 2: T5's pad and eos ids
CAPTION_SEED_BASE = 0  # training-range seeds: the captions only decide the vocabulary


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="new (or empty) directory: text_encoder/ and tokenizer/")
    p.add_argument("--dim", type=int, default=256, help="d_model, the width the DiT reads (model.text_dim)")
    p.add_argument("--layers", type=int, default=2, help="encoder layers (UMT5-XXL: 24)")
    p.add_argument("--head-dim", type=int, default=64, help="d_kv (UMT5-XXL: 64); heads = dim / head-dim, at least 1")
    p.add_argument("--captions", type=int, default=500, help="planned clips whose captions add to the vocabulary")
    p.add_argument("--seed", type=int, default=0, help="torch seed of the random weights")
    args = p.parse_args(argv)
    if min(args.dim, args.layers, args.head_dim) < 1 or args.captions < 0:
        p.error("--dim, --layers and --head-dim must be >= 1, --captions >= 0")
    return args


def world_words() -> set[str]:
    """Every word the caption templates can write (fulldit.world.clips.caption, Move.phrase), from their tables."""
    from fulldit.world.clips import COLORS, FLOOR_WORDS, PATTERN_WORDS, WALL_WORDS
    from fulldit.world.render import SHAPES
    from fulldit.world.trajectories import DIRECTIONS, VERBS

    phrases = [*COLORS, *PATTERN_WORDS.values(), *SHAPES, *WALL_WORDS.values(), *FLOOR_WORDS.values(), *VERBS.values()]
    phrases += [d for ds in DIRECTIONS.values() for d in ds]
    return {w for phrase in phrases for w in phrase.split()}


def world_captions(count: int) -> list[str]:
    """Captions of `count` planned clips (scene + camera path, nothing rendered): the template's glue words."""
    from fulldit.world.clips import caption, plan_clip

    plans = (plan_clip(CAPTION_SEED_BASE + i, frames=17, references_per_object=0) for i in range(count))
    return [caption(p.scene, p.move) for p in plans]


def make_tokenizer(texts: list[str]):  # -> transformers.PreTrainedTokenizerFast
    """WordLevel over whitespace and punctuation, `</s>` appended to every sequence (T5's convention)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=SPECIALS, min_frequency=1))
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def make_umt5(args: argparse.Namespace) -> dict:
    """Write OUT/tokenizer and OUT/text_encoder atomically; returns what the JSON line reports."""
    from transformers import UMT5Config, UMT5EncoderModel

    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: exists and is not an empty directory; choose a new --out")
    captions = world_captions(args.captions)
    tokenizer = make_tokenizer(sorted(world_words()) + captions)
    lengths = [len(ids) for ids in tokenizer(captions)["input_ids"]] if captions else [0]
    unknown = sum(ids.count(tokenizer.unk_token_id) for ids in tokenizer(captions)["input_ids"]) if captions else 0
    heads = max(1, args.dim // args.head_dim)
    config = UMT5Config(
        vocab_size=8 * -(-len(tokenizer) // 8),  # rounded up to a multiple of 8, as released vocabularies are
        d_model=args.dim,
        d_kv=args.head_dim,
        d_ff=int(2.5 * args.dim),  # UMT5-XXL: 10240 / 4096
        num_layers=args.layers,
        num_heads=heads,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    torch.manual_seed(args.seed)
    model = UMT5EncoderModel(config).eval()
    with atomic_dir(out) as tmp:
        tokenizer.save_pretrained(tmp / "tokenizer")
        model.save_pretrained(tmp / "text_encoder")
    info = {
        "out": str(out), "vocab": len(tokenizer), "d_model": args.dim, "layers": args.layers, "heads": heads,
        "parameters": sum(p.numel() for p in model.parameters()), "captions": len(captions),
        "max_caption_tokens": max(lengths), "unknown_tokens": unknown, "seed": args.seed,
    }  # fmt: skip
    print(json.dumps(info), flush=True)
    return info


def main(argv: Sequence[str] | None = None) -> dict:
    return make_umt5(parse_args(argv))


if __name__ == "__main__":
    main()
