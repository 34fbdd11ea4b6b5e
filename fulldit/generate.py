"""Generation: conditions -> tokens -> flow sampler with multi-condition guidance -> codec.decode -> video.

`Pipeline` holds the transformer, the codec and the text encoder of one checkpoint. One `generate()`
serves every task (text-to-video, camera control, identity, depth, image-to-video, prediction,
interpolation and any mix): the task is simply which conditions are given.

Guidance generalises STIV's joint image-text CFG to all conditions with two scales, in one batched
forward:  v = v(-,-) + s_c [v(-,c) - v(-,-)] + s_t [v(T,c) - v(-,c)], where T is the text and c the
token conditions. With s_c = s_t = s this is STIV's JIT-CFG, v(-,-) + s [v(T,c) - v(-,-)]. Frame
conditions are constraints (replacement), applied to every branch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from fulldit.camera import CameraPath, load_camera
from fulldit.checkpoint import (
    MAX_SHARD_BYTES,
    load_state,
    load_text_weights,
    load_weights,
    read_config,
    save_pretrained,
)
from fulldit.codecs import Codec, build_codec
from fulldit.conditions import ConditionInput, Encoding, Given, prepare_conditions
from fulldit.conditions.frames import known_latents
from fulldit.config import SEED_LIMIT, FullDiTConfig, naming
from fulldit.errors import InputError
from fulldit.flow import euler_sample, sampling_times, to_velocity
from fulldit.model import ConditionCache, FullDiT
from fulldit.parallel import Parallel
from fulldit.text_encoders import TextEncoder, build_text_encoder
from fulldit.video_io import (
    depth_is_inverse,
    read_depth,
    read_image,
    read_video,
    resize_center_crop,
)


@dataclass
class Request:
    """What to generate. Images are (3, H, W) and videos (F, 3, H, W) in [0, 1]; depth is (F, H, W).

    `sources` names where each condition came from (a file path), so errors can say which input is wrong.
    """

    prompt: str = ""
    camera: CameraPath | None = None
    references: list[torch.Tensor] = field(default_factory=list)
    depth: torch.Tensor | None = None
    depth_is_disparity: bool = False  # True for relative inverse depth (e.g. a Depth Anything video)
    first_frame: torch.Tensor | None = None
    prefix: torch.Tensor | None = None
    last_frame: torch.Tensor | None = None
    keyframes: dict[int, torch.Tensor] = field(default_factory=dict)
    frames: int | None = None
    height: int | None = None
    width: int | None = None
    steps: int | None = None
    guidance: float | None = None
    text_guidance: float | None = None
    shift: float | None = None
    guidance_min_t: float | None = None
    seed: int | None = None
    sources: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_files(
        cls,
        camera: str | Path | CameraPath | None = None,
        references: Sequence[str | Path] = (),
        depth: str | Path | None = None,
        first_frame: str | Path | None = None,
        prefix: str | Path | None = None,
        last_frame: str | Path | None = None,
        **fields: Any,
    ) -> Request:
        """A request whose conditions are read from files (the formats of `fulldit generate`); other fields as given.

        `camera` may also be a `CameraPath` already built. Bad files raise `InputError` naming the file.
        """
        files = {"camera": camera, "depth": depth, "prefix": prefix}
        return cls(
            camera=load_camera(camera) if isinstance(camera, (str, Path)) else camera,
            references=[read_image(p) for p in references],
            depth=read_depth(depth) if depth else None,
            depth_is_disparity=bool(depth) and depth_is_inverse(depth),
            first_frame=read_image(first_frame) if first_frame else None,
            prefix=read_video(prefix) if prefix else None,
            last_frame=read_image(last_frame) if last_frame else None,
            sources={k: str(v) for k, v in files.items() if isinstance(v, (str, Path)) and v},
            **fields,
        )

    def given_frames(self) -> dict[int, torch.Tensor]:
        """All frame conditions as {frame index: image}; later kinds override earlier ones at the same index."""
        frames = self.frames or 0
        given: dict[int, torch.Tensor] = {}
        if self.prefix is not None:
            given.update({i: f for i, f in enumerate(self.prefix)})
        if self.first_frame is not None:
            given[0] = self.first_frame
        given.update(self.keyframes)
        if self.last_frame is not None:
            given[frames - 1] = self.last_frame
        return given


def branch_inputs(cond: dict[str, ConditionInput], on: torch.Tensor) -> dict[str, ConditionInput]:
    """One sample's conditions (a batch of one) repeated for every guidance branch, present where `on` (n,) is True."""
    n = len(on)
    out = {}
    for name, inp in cond.items():
        present = inp.present.expand(n, *inp.present.shape[1:]) & on.view(n, *[1] * (inp.present.ndim - 1))
        aux = None if inp.aux is None else inp.aux.expand(n)
        out[name] = ConditionInput(inp.value.expand(n, *inp.value.shape[1:]), present, aux)
    return out


@dataclass
class Branches:
    """The guidance rows one model call evaluates: text features (n, Lt, C) and mask, conditions (or their cache),
    and the weights (n, 1, 1, 1, 1) of the rows' velocities in the guided sum."""

    context: torch.Tensor
    context_mask: torch.Tensor
    inputs: dict[str, ConditionInput]
    cache: ConditionCache | None
    weights: torch.Tensor

    def unweighted(self, index: list[int]) -> Branches:
        """The rows `index` alone, each with weight 1 (an unguided step runs the first branch only)."""
        w = torch.ones_like(self.weights[: len(index)])
        if index == list(range(len(self.weights))):  # all of them: no copies
            return replace(self, weights=w)
        i = torch.tensor(index, dtype=torch.long, device=self.weights.device)
        inputs = {k: v.rows(i) for k, v in self.inputs.items()}
        cache = None if self.cache is None else self.cache.rows(i)
        return Branches(self.context[i], self.context_mask[i], inputs, cache, w)


def guidance_branches(has_conditions: bool, guidance: float, text_guidance: float) -> list[tuple[bool, bool, float]]:
    """(text on, conditions on, weight) rows whose weighted sum is the guided velocity; zero weights dropped."""
    if has_conditions:
        rows = [(True, True, text_guidance), (False, True, guidance - text_guidance), (False, False, 1 - guidance)]
    else:
        rows = [(True, False, text_guidance), (False, False, 1 - text_guidance)]
    return [r for r in rows if r[2] != 0]


class Pipeline:
    """A loaded checkpoint ready to generate: transformer + codec + text encoder on one device.

    `parallel` (None: this process alone) splits every generation over the ranks of a torchrun job (parallel.py).
    """

    def __init__(
        self,
        config: FullDiTConfig,
        model: FullDiT,
        codec: Codec,
        text_encoder: TextEncoder,
        device: torch.device,
    ):
        self.config, self.model, self.codec, self.text_encoder, self.device = config, model, codec, text_encoder, device
        self.parallel: Parallel | None = None

    @classmethod
    def from_config(
        cls, config: FullDiTConfig, device: str | torch.device = "cpu", model: FullDiT | None = None
    ) -> Pipeline:
        """A freshly initialised pipeline (random weights) for a config, or around a given transformer."""
        device = torch.device(device)
        model = (FullDiT(config.model) if model is None else model).to(device)
        text_encoder = build_text_encoder(config.text, device)
        if isinstance(text_encoder, torch.nn.Module):
            text_encoder.to(device)
        if text_encoder.dim != config.model.text_dim:
            raise InputError(f"text encoder width {text_encoder.dim} != model.text_dim {config.model.text_dim}")
        codec = build_codec(config.codec, device)
        m = config.model
        if codec.latent_channels != m.in_channels:
            raise InputError(f"model.in_channels={m.in_channels}: the codec makes {codec.latent_channels} channels")
        if "camera" in m.conditions and m.camera.frames_per_token < codec.stride[0] * m.patch[0]:
            raise InputError(
                f"model.camera.frames_per_token={m.camera.frames_per_token}: a token frame covers "
                f"{codec.stride[0] * m.patch[0]} video frames (the codec's time stride x model.patch[0])"
            )
        return cls(config, model, codec, text_encoder, device)

    @classmethod
    def from_pretrained(
        cls,
        directory: str | Path,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        parallel: Parallel | None = None,
    ) -> Pipeline:
        """Load a checkpoint directory (config.json + safetensors). bf16 on CUDA, fp32 on CPU by default.

        parallel: generate across the ranks of a torchrun job; with `shard_weights` the blocks are sharded (FSDP2)
        before they reach the device, so a model larger than one device's memory loads.
        """
        directory = Path(directory)
        config = read_config(directory)
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
        # Built on the meta device, the transformer costs no memory and no random init; the checkpoint's tensors
        # become its parameters, cast (fp32 parts stay fp32) before moving: one copy of a 14B model, not three.
        with torch.device("meta"):
            model = FullDiT(config.model)
        load_weights(model, load_state(directory), str(directory), assign=True)
        model = model.to_dtype(dtype)
        if parallel is not None and parallel.shard_weights:
            model = parallel.shard(model)
        pipe = cls.from_config(config, device, model)
        if isinstance(pipe.text_encoder, torch.nn.Module):
            load_text_weights(pipe.text_encoder, directory)
        pipe.model.eval()
        pipe.parallel = parallel
        return pipe

    def save_pretrained(
        self, directory: str | Path, max_shard_bytes: int = MAX_SHARD_BYTES, dtype: torch.dtype | None = None
    ) -> None:
        """Write config.json + safetensors (see checkpoint.py); dtype=torch.bfloat16 halves the size."""
        text = self.text_encoder if isinstance(self.text_encoder, torch.nn.Module) else None
        save_pretrained(directory, self.config, self.model, text, max_shard_bytes, dtype)

    # -- turning a request into model inputs ------------------------------------------------------

    def check_size(self, frames: int, height: int, width: int, what: str = "") -> None:
        """InputError unless the codec and the patch take `frames` frames of `height` x `width` (`what` names them)."""
        with naming(what):  # what='' names nothing
            if frames < 1 or height < 1 or width < 1:
                raise InputError(f"frames {frames} at {width}x{height}: all must be positive")
            self.codec.latent_frames(frames)  # InputError when the codec cannot take this many frames
            h, w = self.codec.latent_size(height, width)
            _, ph, pw = self.config.model.patch
            sh, sw = self.codec.stride[1] * ph, self.codec.stride[2] * pw
            if h % ph or w % pw:
                raise InputError(f"size {height}x{width}: height must be a multiple of {sh}, width of {sw}")
            if self.codec.latent_frames(frames) % self.config.model.patch[0]:
                raise InputError(f"frames {frames}: the latent frame count must be a multiple of the patch")

    def _resolve(self, req: Request) -> Request:
        """Fill unset fields from the checkpoint's sampling defaults and check sizes against the codec."""
        s = self.config.sample
        names = ["frames", "height", "width", "steps", "guidance", "text_guidance", "shift", "guidance_min_t", "seed"]
        req = replace(req, **{k: getattr(s, k) for k in names if getattr(req, k) is None})
        self.check_size(req.frames, req.height, req.width)
        if req.steps < 1:
            raise InputError(f"steps must be at least 1, not {req.steps}")
        for name in ("guidance", "text_guidance", "shift"):
            value = getattr(req, name)
            if not (math.isfinite(value) and (value > 0 if name == "shift" else value >= 0)):
                raise InputError(f"{name} {value}: must be a finite number {'> 0' if name == 'shift' else '>= 0'}")
        if not 0 <= req.guidance_min_t <= 1:
            raise InputError(f"guidance_min_t {req.guidance_min_t}: must be a flow time in [0, 1]")
        if not 0 <= req.seed < SEED_LIMIT:
            raise InputError(f"seed {req.seed}: must be in [0, 2**63)")
        return req

    def condition_inputs(self, req: Request) -> dict[str, ConditionInput]:
        """The request's token conditions as a batch of one, each prepared by its condition module."""
        first = req.given_frames().get(0)  # the depth condition may reproject it (`model.depth.reproject`)
        given = Given(req.camera, req.references, req.depth, req.depth_is_disparity, req.sources, first)
        missing = [name for name in given.names() if name not in self.model.conditions]
        if missing:
            raise InputError(
                f"this checkpoint has no {missing[0]} condition (it has: {', '.join(self.model.conditions)})"
            )
        size = (req.height, req.width)
        grid = self.model.grid(
            (1, self.config.model.in_channels, self.codec.latent_frames(req.frames), *self.codec.latent_size(*size))
        )
        enc = Encoding(req.frames, size, grid, self.codec, self.device)
        return prepare_conditions(self.config.model, [given], enc)

    # -- sampling ---------------------------------------------------------------------------------

    @torch.no_grad()
    def generate(
        self,
        req: Request | None = None,
        progress: bool = False,
        use_cache: bool = True,
        on_step: Callable[[int, int], None] | None = None,
        **kwargs,
    ) -> torch.Tensor:
        """Generate a video (F, 3, H, W) in [0, 1]. Pass a Request or its fields as keyword arguments.

        use_cache: in the isolated layout, compute condition keys/values once and reuse them at every step.
        on_step: called after each denoising step with (steps done, total steps), e.g. to drive a progress bar.
        """
        req = self._resolve(replace(req or Request(), **kwargs))
        cond = self.condition_inputs(req)
        given = {i: resize_center_crop(img, (req.height, req.width))[0] for i, img in req.given_frames().items()}
        bad = [i for i in given if not 0 <= i < req.frames]
        if bad:
            raise InputError(f"frame condition at index {bad[0]} is outside the {req.frames}-frame video")
        if len(given) >= req.frames:
            raise InputError(f"all {req.frames} frames are given: nothing to generate")

        # 1. Guidance branches as one batch: rows differ in whether text and conditions are present. Across
        # processes, this rank's rows only (all are encoded, so every rank sees the same text features).
        rows = guidance_branches(bool(cond), req.guidance, req.text_guidance)
        context, context_mask = self.text_encoder.encode([req.prompt if text else "" for text, _, _ in rows])
        plan = None if self.parallel is None else self.parallel.plan(len(rows), self.config.model.heads)
        mine = list(range(len(rows))) if plan is None else plan.rows
        seq = None if plan is None else plan.sequence
        rows, n = [rows[i] for i in mine], len(mine)
        context, context_mask = context[mine].to(self.device), context_mask[mine].to(self.device)
        on = torch.tensor([c for _, c, _ in rows], dtype=torch.bool, device=self.device)
        inputs = branch_inputs(cond, on) if bool(on.any()) else {}
        weights = torch.tensor([w for _, _, w in rows], device=self.device).view(n, 1, 1, 1, 1)
        # below guidance_min_t only the first, most conditioned branch runs, unweighted (guidance interval)
        first = [j for j, i in enumerate(mine) if i == 0]

        # 2. Noise, frame constraints, and (isolated layout) the condition keys/values, computed once.
        lat_t = self.codec.latent_frames(req.frames)
        lat_h, lat_w = self.codec.latent_size(req.height, req.width)
        shape = (1, self.config.model.in_channels, lat_t, lat_h, lat_w)
        noise = torch.randn(shape, generator=torch.Generator().manual_seed(req.seed)).to(self.device)
        clean = known = None
        if given:
            clean, known = known_latents(given, req.frames, self.codec)
            clean, known = clean[None].to(self.device), known[None].to(self.device)
        grid = self.model.grid(shape)
        cache = None
        if use_cache and self.config.model.attention == "isolated" and inputs:
            cache = self.model.condition_cache(inputs, grid, context, context_mask, parallel=seq)
        guided = Branches(context, context_mask, inputs, cache, weights)
        unguided = guided.unweighted(first) if req.guidance_min_t > 0 else guided  # (copies of the first row's cache)

        def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            r = unguided if req.guidance_min_t > 0 and float(t.max()) < req.guidance_min_t else guided  # no sync at 0
            m = r.context.shape[0]
            if m == 0:  # more guidance groups than branches, or an unguided step without the first: adds nothing
                v = torch.zeros_like(x, dtype=torch.float32)
            else:
                xb, tb = x.expand(m, -1, -1, -1, -1), t.expand(m, -1)
                out = self.model(
                    xb, tb, r.context, r.context_mask, None if r.cache else r.inputs, r.cache, parallel=seq
                )
                v = (to_velocity(out.float(), xb.float(), tb, self.config.flow) * r.weights).sum(0, keepdim=True)
            return v if plan is None else plan.combine(v)

        # 3. Integrate the flow and decode.
        times = sampling_times(req.steps, req.shift, self.device)
        quiet = not progress or (self.parallel is not None and self.parallel.rank != 0)
        bar = tqdm(total=req.steps, desc="denoising", disable=quiet, leave=False)

        def step_done(i: int) -> None:
            bar.update()
            if on_step is not None:
                on_step(i + 1, req.steps)

        latents = euler_sample(velocity, noise, times, clean, known, progress=step_done)
        bar.close()
        video = self.codec.decode(latents.to(self.device))[0]  # (3, F, H, W) in [-1, 1]
        return ((video.float().permute(1, 0, 2, 3) + 1) / 2).clamp(0, 1).cpu()
