"""Does a generated video show the identity (object) of a reference image? Plus CLIP text alignment.

`identity_score(video, reference)` needs no learned weights. It is built for FullBench-Synth, whose identities are
objects of 1-2 saturated named colours (`fulldit.world.clips.COLORS`) in a pattern, rendered alone on white as
references, and shown in a room of muted colours in the video. It measures *colour-palette presence*:

1. Each pixel is soft-binned into a colour histogram that ignores shading: 12 hue bins x 3 saturation bins for
   chromatic pixels (hue and saturation do not change when a colour is scaled by a light level), plus 4 value
   (brightness) bins for achromatic pixels (saturation < ~0.3 or very dark), blended smoothly between the two.
   Soft (linear) binning keeps colours near a bin edge (orange sits at 28-30 degrees of hue) stable.
2. The reference's histogram is taken over its foreground: pixels differing by more than 0.06 in some channel from
   the background colour, which is the median of the image border (white for the bench's references); when
   under 1% of the pixels are foreground, the whole image.
3. Over every frame, square windows of 1/8, 3/16, 1/4, 3/8 and 1/2 of the frame's short side slide with a stride
   of a quarter window; a window's score is the weighted histogram intersection
   sum_b w_b min(h_ref[b], h_win[b]) / sum_b w_b h_ref[b], i.e. the fraction of the reference's colour mass found
   in the window, with w_b = 1 for chromatic bins and 0.5 for achromatic ones (white and black objects look like
   the grey floors and shadows of the room, so they are weaker evidence).
4. A frame's score is its best window, the video's the mean over frames (an identity present in only part of the
   clip scores in proportion). Range [0, 1], higher = more similar.

Measured on ground-truth renders of world seeds 0-29 (16 frames, 128x128, 2 references per object; clip i's own
references are "right", those of clip i+k "wrong", k = 1, 7, 13): right above wrong for 97.0 / 98.9 / 95.8% of all
(right, wrong) pairs, 100% of clips by mean right vs mean wrong, mean margin 0.60 / 0.60 / 0.57 (right 0.90, wrong
~0.31). With the videos blurred (Gaussian sigma 1 px) and noised (sigma 0.03), as a stand-in for generated frames:
93.0 / 92.0 / 90.5% of pairs, margin ~0.42. tests/test_identity.py asserts >= 90% of clips on seeds 100-119.

Limits: it sees colour proportions, not shape; the pattern only through the proportions of its colours (dots vs
checks of the same two colours differ, stripes vs checks barely). An object of the same colours, or a subset of them
over a window (a solid yellow reference vs a large yellow-and-white object), scores as high as the right one; purely
white, grey or black objects are judged by brightness alone and confuse with the room; an object hidden in most
frames scores low even when the generator drew it right (it is measured against the frames, not the plan). Blur
mixes thin stripes into new hues. For real videos use `FeatureIdentity` (DINOv2 / CLIP embeddings) instead.

`FeatureIdentity(path)`: cosine similarity between the embedding of the reference and that of the best view of the
generated video (whole frames and a 3x3 grid of half-size crops of up to `max_frames` frames), with a DINOv2 or CLIP
vision model loaded by transformers from a local directory (no download).

`ClipTextScore(path).score(video, prompt)`: mean over frames of the cosine between CLIP's image embedding of the
frame and its text embedding of the prompt (the raw cosine, not CLIPScore's 2.5 * max(cos, 0)).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fulldit.errors import InputError

__all__ = ["identity_score", "colour_histogram", "FeatureIdentity", "ClipTextScore"]

HUE_BINS = 12
SAT_CENTRES = (0.35, 0.65, 0.95)  # chromatic saturation bins (clamped to the outer centres)
VALUE_CENTRES = (0.0, 1 / 3, 2 / 3, 1.0)  # achromatic brightness bins
CHROMA_SAT = (0.2, 0.4)  # saturation ramp from achromatic to chromatic
CHROMA_VALUE = (0.06, 0.15)  # brightness ramp: hue is meaningless in near-black pixels
ACHROMATIC_WEIGHT = 0.5
WINDOWS = (0.125, 0.1875, 0.25, 0.375, 0.5)  # window sides as fractions of the frame's short side
FOREGROUND = 0.06  # channel difference from the border colour that makes a reference pixel foreground
_WORK = 64  # frames with a short side >= 2 * _WORK have their per-pixel histograms pooled towards this size
NUM_BINS = HUE_BINS * len(SAT_CENTRES) + len(VALUE_CENTRES)


def _smoothstep(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    t = ((x - lo) / (hi - lo)).clamp(0, 1)
    return t * t * (3 - 2 * t)


def _hsv(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hue in [0, 1), saturation, value of (..., 3) RGB."""
    r, g, b = rgb.unbind(-1)
    v, mn = rgb.amax(-1), rgb.amin(-1)
    c = v - mn
    s = torch.where(v > 1e-6, c / v.clamp_min(1e-6), torch.zeros_like(v))
    cc = c.clamp_min(1e-6)
    h = torch.where(v == r, ((g - b) / cc) % 6, torch.where(v == g, (b - r) / cc + 2, (r - g) / cc + 4)) / 6.0
    return h, s, v


def _tent(x: torch.Tensor, centre: float, width: float) -> torch.Tensor:
    return (1 - (x - centre).abs() / width).clamp_min(0)


def _bin_maps(rgb: torch.Tensor, bins: list[int]) -> torch.Tensor:
    """Soft membership (..., len(bins)) of (..., 3) RGB pixels in the listed histogram bins (all sum to 1)."""
    h, s, v = _hsv(rgb.float().clamp(0, 1))
    chroma = _smoothstep(s, *CHROMA_SAT) * _smoothstep(v, *CHROMA_VALUE)
    s = s.clamp(SAT_CENTRES[0], SAT_CENTRES[-1])
    sat_width = SAT_CENTRES[1] - SAT_CENTRES[0]
    out = []
    for b in bins:
        if b < HUE_BINS * len(SAT_CENTRES):
            k, j = divmod(b, len(SAT_CENTRES))
            d = (h - k / HUE_BINS).abs()
            hue = (1 - torch.minimum(d, 1 - d) * HUE_BINS).clamp_min(0)
            out.append(hue * _tent(s, SAT_CENTRES[j], sat_width) * chroma)
        else:
            centre = VALUE_CENTRES[b - HUE_BINS * len(SAT_CENTRES)]
            out.append(_tent(v, centre, VALUE_CENTRES[1] - VALUE_CENTRES[0]) * (1 - chroma))
    return torch.stack(out, -1)


def _image(x: torch.Tensor | np.ndarray, what: str, ndim: int) -> torch.Tensor:
    x = torch.as_tensor(x).detach().float().cpu()
    if x.ndim != ndim or x.shape[-3] != 3 or min(x.shape[-2:]) < 1:
        shape = "(3, h, w)" if ndim == 3 else "(F, 3, H, W)"
        raise InputError(f"{what}: expected a {shape} image in [0, 1], got shape {tuple(x.shape)}")
    return x


def colour_histogram(reference: torch.Tensor) -> torch.Tensor:
    """(NUM_BINS,) colour histogram (sums to 1) of the reference's foreground (see the module docstring)."""
    img = _image(reference, "identity reference", 3).permute(1, 2, 0)
    border = torch.cat([img[0], img[-1], img[:, 0], img[:, -1]])
    background = border.median(0).values
    fg = (img - background).abs().amax(-1) > FOREGROUND
    pixels = img[fg] if int(fg.sum()) >= max(16, img.shape[0] * img.shape[1] // 100) else img.reshape(-1, 3)
    return _bin_maps(pixels, list(range(NUM_BINS))).mean(0)


def identity_score(video: torch.Tensor, reference: torch.Tensor) -> float:
    """Fraction of the reference's colour palette found in the best window of each frame, averaged over frames."""
    frames = _image(video, "identity_score video", 4)
    hist = colour_histogram(reference)
    bins = [b for b in range(NUM_BINS) if hist[b] > 1e-3]
    if not bins:
        return 0.0
    weight = torch.tensor([1.0 if b < HUE_BINS * len(SAT_CENTRES) else ACHROMATIC_WEIGHT for b in bins])
    ref = hist[bins] * weight
    maps = _bin_maps(frames.permute(0, 2, 3, 1), bins).permute(0, 3, 1, 2).contiguous()  # (F, B, H, W)
    short = min(frames.shape[-2:])
    pool = max(1, short // _WORK)
    if pool > 1:  # exact: a window of whole pooled cells has the mean membership of its pixels
        maps = F.avg_pool2d(maps, pool, ceil_mode=True)
    short = min(maps.shape[-2:])
    best = torch.zeros(frames.shape[0])
    for fraction in WINDOWS:
        side = max(1, min(short, round(fraction * short)))
        window = F.avg_pool2d(maps, side, max(1, side // 4)) * weight[None, :, None, None]
        inter = torch.minimum(window, ref[None, :, None, None]).sum(1) / ref.sum()
        best = torch.maximum(best, inter.flatten(1).amax(1))
    return float(best.mean())


# ------------------------------------------------------------------------------------------- learned (local) models


def _load(path: str | Path, what: str, device: str, tokenizer: bool = False):
    """Model (in eval mode on `device`), image processor and optionally tokenizer from a local directory."""
    folder = Path(path)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such model directory (the {what} loads only from a local folder)")
    try:
        import transformers
        from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoTokenizer

        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        arch = (getattr(config, "architectures", None) or [None])[0]
        cls = getattr(transformers, arch, None) if arch else None  # the saved class keeps e.g. CLIP's projection
        model = (cls or AutoModel).from_pretrained(folder, local_files_only=True)
        if tokenizer and not hasattr(model, "get_text_features"):
            raise InputError(f"{folder}: {type(model).__name__} has no text tower; the {what} needs a CLIP model")
        processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
        tok = AutoTokenizer.from_pretrained(folder, local_files_only=True) if tokenizer else None
    except InputError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        reason = " ".join(str(err).split())[:300]
        raise InputError(f"{folder}: cannot load the {what} from this directory: {reason}") from err
    return model.to(device).eval(), processor, tok


def _features(out) -> torch.Tensor:
    """The embedding tensor of a transformers output: a tensor, image/text embeds, pooler output or the CLS token."""
    if isinstance(out, torch.Tensor):
        return out
    for key in ("image_embeds", "text_embeds", "pooler_output"):
        value = getattr(out, key, None)
        if isinstance(value, torch.Tensor):
            return value
    return out.last_hidden_state[:, 0]


def _to_uint8(images: torch.Tensor) -> list[np.ndarray]:
    """(N, 3, h, w) in [0, 1] -> list of (h, w, 3) uint8, what every image processor accepts."""
    arr = (images.detach().float().cpu().clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return list(arr)


class _VisionEmbedder:
    def __init__(self, path: str | Path, what: str, device: str = "cpu", tokenizer: bool = False, batch: int = 32):
        self.device, self.batch = device, batch
        self.model, self.processor, self.tokenizer = _load(path, what, device, tokenizer)

    @torch.no_grad()
    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, h, w) in [0, 1] -> (N, D) unit embeddings."""
        out = []
        for i in range(0, images.shape[0], self.batch):
            pixels = self.processor(images=_to_uint8(images[i : i + self.batch]), return_tensors="pt")["pixel_values"]
            pixels = pixels.to(self.device, next(self.model.parameters()).dtype)
            if hasattr(self.model, "get_image_features"):
                feats = _features(self.model.get_image_features(pixel_values=pixels))
            else:
                feats = _features(self.model(pixel_values=pixels))
            out.append(F.normalize(feats.float(), dim=-1).cpu())
        return torch.cat(out)


def _views(frames: torch.Tensor, crops: bool) -> torch.Tensor:
    """Whole frames, plus (crops=True) a 3x3 grid of half-size crops of each at quarter strides."""
    if not crops:
        return frames
    _, _, h, w = frames.shape
    ch, cw = max(1, h // 2), max(1, w // 2)
    parts = [frames]
    for y in (0, (h - ch) // 2, h - ch):
        for x in (0, (w - cw) // 2, w - cw):
            crop = frames[:, :, y : y + ch, x : x + cw]
            parts.append(F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False))
    return torch.cat(parts)


class FeatureIdentity(_VisionEmbedder):
    """Identity similarity with a local DINOv2 or CLIP vision model: the best cosine between the reference's
    embedding and the embeddings of the video's views (whole frames and, with `crops`, 3x3 half-size crops) over
    up to `max_frames` frames spread evenly over the clip. Range [-1, 1], higher = more similar."""

    def __init__(self, path: str | Path, device: str = "cpu", crops: bool = True, max_frames: int = 8):
        super().__init__(path, "identity feature model", device)
        self.crops, self.max_frames = crops, max(1, int(max_frames))

    def score(self, video: torch.Tensor, reference: torch.Tensor) -> float:
        frames = _image(video, "FeatureIdentity video", 4)
        ref = _image(reference, "FeatureIdentity reference", 3)
        pick = np.unique(np.linspace(0, frames.shape[0] - 1, min(self.max_frames, frames.shape[0])).round())
        views = _views(frames[torch.as_tensor(pick, dtype=torch.long)], self.crops)
        return float((self.embed_images(views) @ self.embed_images(ref[None])[0]).max())


class ClipTextScore(_VisionEmbedder):
    """Text alignment with a local CLIP model (CLIPModel or any model with get_image/text_features): the mean over
    frames of the cosine between the frame's and the prompt's embeddings. Range [-1, 1]."""

    def __init__(self, path: str | Path, device: str = "cpu"):
        super().__init__(path, "CLIP text-alignment model", device, tokenizer=True)

    @torch.no_grad()
    def score(self, video: torch.Tensor, prompt: str) -> float:
        frames = _image(video, "ClipTextScore video", 4)
        config = getattr(self.model.config, "text_config", self.model.config)
        limit = int(getattr(config, "max_position_embeddings", 77))
        tokens = self.tokenizer([prompt], padding=True, truncation=True, max_length=limit, return_tensors="pt")
        tokens = {k: v.to(self.device) for k, v in tokens.items() if k in ("input_ids", "attention_mask")}
        text = F.normalize(_features(self.model.get_text_features(**tokens)).float(), dim=-1).cpu()[0]
        return float((self.embed_images(frames) @ text).mean())
