"""A Wan2.1-1.3B-sized random diffusers transformer, converted into FullDiT: same outputs, and step time, in one run.

The diffusers `WanTransformer3DModel` is built with Wan2.1-T2V-1.3B's shapes (random weights: none can be
downloaded here), its state dict is renamed with the converter's own name map (`fulldit.convert.wan.fulldit_name`)
plus the tensors FullDiT adds (`new_tensors`: condition tokenizers and zero gates), and both models run the same
inputs: one denoising step at 480x832x81 (32,760 video tokens, 512 text tokens), text only.

Printed: the agreement of the two in bf16 (max and mean |ours - diffusers| relative to diffusers' output) and of
each against diffusers in fp32 (what bf16 costs either), then the median step time of each.

    python bench/wan_convert.py                                   # on a GPU
    python bench/wan_convert.py --layers 2 --frames 5 --height 64 --width 64 --device cpu   # a CPU smoke run
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

import torch
from step import keep_fp32_modules, timed  # bench/step.py, beside this script

from fulldit.checkpoint import load_weights
from fulldit.convert import new_tensors, wan_config
from fulldit.convert.wan import diffusers_architecture, fulldit_name
from fulldit.model import FullDiT

WAN_1_3B = dict(
    patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
    text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True, eps=1e-6,
)  # fmt: skip


def converted(reference: torch.nn.Module) -> FullDiT:
    """FullDiT holding the reference's weights under the converter's names, plus its own (zero-gated) additions."""
    cfg = wan_config(diffusers_architecture(dict(reference.config), Path("bench")), "", "", ("camera", "depth"))
    state = {}
    for name, tensor in reference.state_dict().items():
        target = fulldit_name(name, "diffusers")
        assert target is not None, f"no FullDiT name for {name}"
        state[target] = tensor.detach().float().clone()
    state.update(new_tensors(cfg.model, seed=0))
    with torch.device("meta"):
        model = FullDiT(cfg.model)
    load_weights(model, state, "bench", assign=True)
    return model


def relative(ours: torch.Tensor, theirs: torch.Tensor) -> dict[str, float]:
    d = (ours.float() - theirs.float()).abs()
    return {
        "max_rel": (d.max() / theirs.float().abs().max()).item(),
        "mean_rel": (d.mean() / theirs.float().abs().mean()).item(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=30)
    p.add_argument("--frames", type=int, default=81)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=832)
    p.add_argument("--text-tokens", type=int, default=512)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    from diffusers import WanTransformer3DModel

    device = torch.device(args.device)
    torch.manual_seed(0)
    with device:
        reference = WanTransformer3DModel(**{**WAN_1_3B, "num_layers": args.layers}).eval()  # fp32
    ours = converted(reference).to(device).eval()

    t_lat, h_lat, w_lat = 1 + (args.frames - 1) // 4, args.height // 8, args.width // 8
    g = torch.Generator(device="cpu").manual_seed(1)
    x = torch.randn(1, 16, t_lat, h_lat, w_lat, generator=g).to(device)
    context = torch.randn(1, args.text_tokens, 4096, generator=g).to(device)
    t = torch.tensor([0.5], device=device)

    def run_theirs() -> torch.Tensor:
        return reference(x, t * 1000, context, return_dict=False)[0]

    def run_ours() -> torch.Tensor:
        return ours(x, t, context)

    with torch.no_grad():
        fp32_theirs = run_theirs()
        fp32_ours = run_ours()
        keep_fp32_modules(reference.to(torch.bfloat16))  # as diffusers' from_pretrained(torch_dtype=bf16)
        ours.to_dtype(torch.bfloat16)  # ours: modulation, time embedding and norms stay fp32 (as Wan2.1)
        xb, cb = x.to(torch.bfloat16), context.to(torch.bfloat16)

        def run_theirs_bf16() -> torch.Tensor:
            return reference(xb, t * 1000, cb, return_dict=False)[0]

        def run_ours_bf16() -> torch.Tensor:
            return ours(xb, t, cb)

        bf16_theirs, bf16_ours = run_theirs_bf16(), run_ours_bf16()
        step_theirs = timed(run_theirs_bf16, 2, args.repeat, device)
        step_ours = timed(run_ours_bf16, 2, args.repeat, device)

    tokens = t_lat * (h_lat // 2) * (w_lat // 2)
    row = {
        "bench": "wan_convert",
        "date": datetime.date.today().isoformat(),
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "layers": args.layers,
        "video_tokens": tokens,
        "fp32_ours_vs_diffusers": relative(fp32_ours, fp32_theirs),
        "bf16_ours_vs_diffusers": relative(bf16_ours, bf16_theirs),
        "bf16_ours_vs_fp32": relative(bf16_ours, fp32_theirs),
        "bf16_diffusers_vs_fp32": relative(bf16_theirs, fp32_theirs),
        "step_s_ours": step_ours,
        "step_s_diffusers": step_theirs,
        "speedup": step_theirs / step_ours,
    }
    print(f"{row['device']}, torch {row['torch']}, {row['date']}: {args.layers} layers, {tokens} video tokens")
    for key in ("fp32_ours_vs_diffusers", "bf16_ours_vs_diffusers", "bf16_ours_vs_fp32", "bf16_diffusers_vs_fp32"):
        print(f"  {key:26s} max rel {row[key]['max_rel']:.2e}  mean rel {row[key]['mean_rel']:.2e}")
    print(f"  step (bf16): ours {step_ours:.3f} s, diffusers {step_theirs:.3f} s, ratio {row['speedup']:.2f}")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
