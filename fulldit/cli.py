"""The `fulldit` command (generate, info, init, synth, eval, train, convert, prepare, camera, demo): parses arguments,
calls the API. Each command is a pair of functions, `add_<name>(sub)` defining its options right above
`cmd_<name>(args)` running it; COMMANDS lists the pairs.

Bad input (a missing or malformed file, a wrong frame count, an unknown option) prints one line,
`fulldit: error: ...`, and exits with code 2; no traceback, and no output file is left behind.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from fulldit.errors import InputError

Subparsers = argparse._SubParsersAction  # what `add_subparsers` returns: each `add_<name>` adds its parser to it


def default_checkpoint() -> Path:
    """$FULLDIT_CHECKPOINT, else the default model shipped in the repository (checkpoints/default)."""
    env = os.environ.get("FULLDIT_CHECKPOINT")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "checkpoints" / "default"


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit code 2 (argparse's own code, without the usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"fulldit: error: {message} (see {self.prog} --help)\n")
        sys.exit(2)


def parse_size(text: str) -> tuple[int, int]:
    """'WIDTHxHEIGHT' (ffmpeg's order) -> (height, width)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected WIDTHxHEIGHT, e.g. 128x128") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"size {text!r}: width and height must be positive")
    return h, w


def number(
    kind: type, low: float | None = None, high: float | None = None, open_low: bool = False, open_high: bool = False
) -> Callable[[str], int | float]:
    """An argparse type: an int (`kind` int) or a finite float, in [low, high] (an end open where asked).

    argparse puts the option's name in front of the message: "argument --guidance: 'nan' is not a finite number".
    """

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        too_low = low is not None and (value <= low if open_low else value < low)
        too_high = high is not None and (value >= high if open_high else value > high)
        if too_low or too_high:
            if high is None:
                rule = f"greater than {low:g}" if open_low else f"at least {low:g}"
            elif low is None:
                rule = f"less than {high:g}" if open_high else f"at most {high:g}"
            else:
                rule = f"in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
            raise argparse.ArgumentTypeError(f"{text}: must be {rule}")
        return value

    return parse


COUNT = number(int, 1)  # frames, steps, clips, cases: at least 1
SEED = number(int, 0, 2**63 - 1)  # what torch and numpy generators both take (fulldit.config.SEED_LIMIT)
POSITIVE = number(float, 0, open_low=True)  # fps, shift, sizes in MB
SCALE = number(float, 0)  # guidance scales: 0 ignores the condition, 1 is off
FINITE = number(float)


def build_parser() -> argparse.ArgumentParser:
    """The `fulldit` parser: each subcommand's options are defined by its `add_<name>`, right above `cmd_<name>`."""
    parser = Parser(prog="fulldit", description="FullDiT: video generation from any mix of conditions.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for add, _ in COMMANDS.values():
        add(sub)
    return parser


def _check_file(path: str | None) -> None:
    if path is not None and not Path(path).exists():
        raise InputError(f"{path}: no such file")


def _check_input(path: str | None, option: str, directory: bool = False) -> None:
    """An input that must exist and be a directory (`directory`) or a file."""
    if path is None:
        return
    p = Path(path)
    if not p.exists():
        raise InputError(f"{option} {path}: no such {'directory' if directory else 'file'}")
    if directory and not p.is_dir():
        raise InputError(f"{option} {path}: is a file, not a directory")
    if not directory and p.is_dir():
        raise InputError(f"{option} {path}: is a directory, not a file")


def _check_output(path: str | Path, option: str, directory: bool, inputs: dict[str, str | None]) -> None:
    """An output: not an existing path of the other kind, not one of `inputs` (option -> path), in a writable place.

    Writability is tried (a temporary file made and removed), not read from permission bits, which root ignores.
    """
    p = Path(path)
    if directory and p.exists() and not p.is_dir():
        raise InputError(f"{option} {path}: is a file, not a directory")
    if not directory and p.is_dir():
        raise InputError(f"{option} {path}: is a directory, not a file")
    for name, other in inputs.items():
        if other is not None and p.resolve() == Path(other).resolve():
            raise InputError(f"{option} {path}: is the input of {name}; write somewhere else")
    place = p if p.is_dir() else p.parent
    while not place.exists():
        place = place.parent
    if not place.is_dir():
        raise InputError(f"{option} {path}: {place} is a file, not a directory")
    try:
        with tempfile.TemporaryFile(dir=place):
            pass
    except OSError as err:
        raise InputError(f"{option} {path}: cannot write in {place} ({err.strerror or err})") from None


def _check_device(device: str | None) -> None:
    """--device: cpu, or a CUDA device that exists here (cuda, cuda:1 ...)."""
    if device is None:
        return
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError:
        raise InputError(f"--device {device}: not a device; use cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"--device {device}: use cpu, cuda or cuda:N")
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise InputError(f"--device {device}: no such CUDA device here ({torch.cuda.device_count()} found)")


def add_generate(sub: Subparsers) -> None:
    p = sub.add_parser("generate", help="generate a video (.mp4) and a preview sheet (.png)")
    p.add_argument("--prompt", default="", help="text prompt")
    p.add_argument("--camera", metavar="FILE", help="camera path: RealEstate10K/CameraCtrl .txt or .json")
    p.add_argument("--reference", metavar="IMG", action="append", default=[], help="identity reference image (repeat)")
    p.add_argument(
        "--depth",
        metavar="VIDEO",
        help="depth: .npy/.npz (metric), a folder of 16-bit PNGs, or a video of relative inverse depth (bright = near)",
    )
    p.add_argument("--first-frame", metavar="IMG", help="first frame (image-to-video)")
    p.add_argument("--prefix", metavar="VIDEO", help="prefix frames to continue (video prediction)")
    p.add_argument("--last-frame", metavar="IMG", help="last frame (interpolation with --first-frame)")
    p.add_argument("--frames", type=COUNT, help="number of frames (default: the checkpoint's)")
    p.add_argument(
        "--size", type=parse_size, metavar="WxH", help="frame size, e.g. 128x128 (default: the checkpoint's)"
    )
    p.add_argument("--steps", type=COUNT, help="denoising steps")
    p.add_argument("--guidance", type=SCALE, help="condition guidance scale (1 = off)")
    p.add_argument("--text-guidance", type=SCALE, help="text guidance scale (1 = off)")
    p.add_argument("--shift", type=POSITIVE, help="sampling timestep shift")
    p.add_argument(
        "--guidance-min-t",
        type=number(float, 0, 1),
        metavar="T",
        help="guide only the steps at flow time >= T (1 = noise); the later ones run the conditioned branch alone, "
        "saving its guidance passes (0 = every step)",
    )
    p.add_argument("--seed", type=SEED, help="random seed")
    p.add_argument("--fps", type=POSITIVE, help="frame rate of the written video")
    p.add_argument("--checkpoint", metavar="DIR", help="checkpoint directory (default: the shipped default model)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the transformer blocks (GPU: ~1.3x faster steps after a ~1 min compile)",
    )
    p.add_argument(
        "-o", "--output", metavar="OUT.mp4", default="output.mp4", help="output video; the preview is OUT.png"
    )
    p.add_argument(
        "--parallel",
        choices=["auto", "cfg", "sequence"],
        help="under torchrun: guidance branches on different ranks (cfg), the tokens split over the ranks "
        "(sequence), or both (auto, the default)",
    )
    p.add_argument(
        "--shard-weights", action="store_true", help="under torchrun: shard the transformer's weights (FSDP2)"
    )


def cmd_generate(args: argparse.Namespace) -> None:
    from fulldit.generate import Pipeline, Request
    from fulldit.preview import condition_thumbnails
    from fulldit.video_io import write_preview, write_video

    out = Path(args.output)
    if out.suffix.lower() != ".mp4":
        raise InputError(f"{out}: the output must be an .mp4 file")
    for p in [args.camera, args.depth, args.first_frame, args.prefix, args.last_frame, *args.reference]:
        _check_file(p)  # fail on a missing file before loading the model
    inputs = {"--camera": args.camera, "--depth": args.depth, "--first-frame": args.first_frame}
    inputs |= {"--prefix": args.prefix, "--last-frame": args.last_frame}
    inputs |= {f"--reference {r}": r for r in args.reference}
    _check_output(out, "-o", False, inputs)
    _check_output(out.with_suffix(".png"), "-o (its preview .png)", False, inputs)
    _check_device(args.device)
    ckpt = Path(args.checkpoint) if args.checkpoint else default_checkpoint()
    device, parallel = args.device, None
    if int(os.environ.get("WORLD_SIZE", 1)) > 1:  # torchrun: one generation split over its processes
        from fulldit.parallel import Parallel, init_distributed

        device = init_distributed(args.device)
        parallel = Parallel(args.parallel or "auto", args.shard_weights)
    elif args.parallel or args.shard_weights:
        raise InputError(
            "--parallel and --shard-weights split a generation over torchrun's processes: "
            "torchrun --nproc_per_node N -m fulldit.cli generate ..."
        )
    pipe = Pipeline.from_pretrained(ckpt, device=device, parallel=parallel)
    if args.compile:
        pipe.model.compile_blocks()
    height, width = args.size or (None, None)
    req = Request.from_files(
        camera=args.camera,
        references=args.reference,
        depth=args.depth,
        first_frame=args.first_frame,
        prefix=args.prefix,
        last_frame=args.last_frame,
        prompt=args.prompt,
        frames=args.frames,
        height=height,
        width=width,
        steps=args.steps,
        guidance=args.guidance,
        text_guidance=args.text_guidance,
        shift=args.shift,
        guidance_min_t=args.guidance_min_t,
        seed=args.seed,
    )
    video = pipe.generate(req, progress=True)
    if parallel is not None and parallel.rank != 0:
        return  # rank 0 writes the files
    write_video(out, video, fps=args.fps or pipe.config.sample.fps)
    write_preview(out.with_suffix(".png"), video, condition_thumbnails(req))
    print(f"wrote {out} ({video.shape[0]} frames, {video.shape[3]}x{video.shape[2]}) and {out.with_suffix('.png')}")


def add_info(sub: Subparsers) -> None:
    p = sub.add_parser("info", help="describe a checkpoint directory")
    p.add_argument("checkpoint", metavar="DIR", nargs="?", help="checkpoint directory (default: the shipped model)")


def cmd_info(args: argparse.Namespace) -> None:
    import torch

    from fulldit.checkpoint import check_state, load_state, read_config
    from fulldit.model import FullDiT

    ckpt = Path(args.checkpoint) if args.checkpoint else default_checkpoint()
    cfg = read_config(ckpt)
    state = load_state(ckpt)
    with torch.device("meta"):  # names and shapes only
        check_state(FullDiT(cfg.model).state_dict(), state, str(ckpt))
    m, s = cfg.model, cfg.sample
    params = sum(v.numel() for v in state.values())
    cond_params = sum(v.numel() for k, v in state.items() if k.startswith("conditions."))
    card = ckpt / "README.md"
    print(f"checkpoint   {ckpt}")
    print(
        f"transformer  {params / 1e6:.2f}M parameters ({cond_params / 1e6:.2f}M in condition modules), "
        f"dim {m.dim}, {m.layers} layers, {m.heads} heads x {m.head_dim}, ffn {m.ffn_dim}, patch {tuple(m.patch)}"
    )
    print(f"attention    {m.attention}")
    print(f"conditions   {', '.join(m.conditions) or 'none'} (camera: {m.camera.mode}) + frames (first/prefix/last)")
    print(
        f"codec        {cfg.codec.kind}"
        + (f" stride {tuple(cfg.codec.stride)}" if cfg.codec.kind == "pixel" else f" from {cfg.codec.path}")
    )
    print(f"text         {cfg.text.kind}" + (f" from {cfg.text.path}" if cfg.text.path else f", width {cfg.text.dim}"))
    print(f"flow         predicts {cfg.flow.prediction}")
    print(
        f"defaults     {s.frames} frames at {s.width}x{s.height}, {s.steps} steps, shift {s.shift}, "
        f"guidance {s.guidance} / text {s.text_guidance}" + (f" at t >= {s.guidance_min_t}" if s.guidance_min_t else "")
    )
    if card.is_file():
        print(f"model card   {card}")


def add_init(sub: Subparsers) -> None:
    p = sub.add_parser("init", help="write a randomly initialised checkpoint for a config (a starting point)")
    p.add_argument("--config", metavar="YAML", required=True, help="config file, e.g. configs/tiny.yaml")
    p.add_argument("--out", metavar="DIR", required=True, help="checkpoint directory to write")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32", help="storage type of the weights")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. model.layers=4")


def cmd_init(args: argparse.Namespace) -> None:
    import torch

    from fulldit.atomic import atomic_dir
    from fulldit.config import load_config
    from fulldit.generate import Pipeline

    _check_output(args.out, "--out", True, {"--config": args.config})
    cfg = load_config(args.config, args.overrides)
    torch.manual_seed(args.seed)
    pipe = Pipeline.from_config(cfg)
    with atomic_dir(args.out) as tmp:
        pipe.save_pretrained(tmp, dtype=getattr(torch, args.dtype))
    print(f"wrote {args.out}: {pipe.model.num_params() / 1e6:.2f}M parameters, randomly initialised (seed {args.seed})")


def add_synth(sub: Subparsers) -> None:
    p = sub.add_parser("synth", help="render synthetic clips into a dataset folder, or the FullBench-Synth split")
    p.add_argument("--out", metavar="DIR", required=True, help="output folder (new or empty)")
    p.add_argument("--n", type=COUNT, default=64, help="number of clips (ignored with --bench)")
    p.add_argument("--seed", type=SEED, default=0, help="first seed; clip i has seed SEED + i")
    p.add_argument("--frames", type=COUNT, default=16)
    p.add_argument("--size", type=parse_size, metavar="WxH", default=(128, 128), help="frame size (default 128x128)")
    p.add_argument("--references", type=int, default=2, choices=[1, 2], help="reference images per object")
    p.add_argument("--fps", type=POSITIVE, default=8.0)
    p.add_argument("--device", default=None, help="render on cpu or cuda (default: cuda when available)")
    p.add_argument("--bench", action="store_true", help="write FullBench-Synth (fixed seeds never used in training)")
    p.add_argument("--cases", type=COUNT, default=32, help="--bench: cases per condition combination")
    p.add_argument("--combos", nargs="+", metavar="COMBO", help="--bench: only these combinations")


def cmd_synth(args: argparse.Namespace) -> None:
    import torch

    from fulldit.world.synth import write_bench, write_dataset

    _check_output(args.out, "--out", True, {})
    _check_device(args.device)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    h, w = args.size
    if args.bench:
        out = write_bench(
            args.out,
            cases=args.cases,
            frames=args.frames,
            height=h,
            width=w,
            device=device,
            combos=args.combos,
            fps=args.fps,
        )
        print(f"wrote FullBench-Synth to {out} (bench.json, manifest.jsonl, contact_sheet.png)")
    else:
        out = write_dataset(
            args.out,
            n=args.n,
            seed=args.seed,
            frames=args.frames,
            height=h,
            width=w,
            device=device,
            references_per_object=args.references,
            fps=args.fps,
        )
        print(f"wrote {args.n} clips to {out} (manifest.jsonl, contact_sheet.png)")


def add_eval(sub: Subparsers) -> None:
    p = sub.add_parser("eval", help="FullBench: generate and score a benchmark, or score another system's videos")
    p.add_argument("--bench", metavar="DIR", required=True, help="benchmark folder (fulldit synth --bench)")
    p.add_argument("--out", metavar="DIR", required=True, help="report folder (resumable: existing results are kept)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", metavar="DIR", help="generate every case with this checkpoint")
    src.add_argument(
        "--videos",
        metavar="DIR",
        help="score existing videos: DIR/<case>.mp4, a report's DIR/<case>/<variant>.mp4 (--generate-only's "
        "OUT/videos), or a bench folder (its ground truth)",
    )
    p.add_argument("--cases", type=COUNT, help="at most this many cases per combination")
    p.add_argument("--combos", nargs="+", metavar="COMBO", help="only these combinations")
    p.add_argument("--steps", type=COUNT, help="denoising steps (default: the checkpoint's)")
    p.add_argument(
        "--depth-estimator",
        metavar="DIR",
        help="transformers depth model directory (default: the synthetic-world depth net)",
    )
    p.add_argument("--clip", metavar="DIR", help="CLIP model directory: adds text alignment (clip_text)")
    p.add_argument("--identity-model", metavar="DIR", help="DINOv2/CLIP vision directory: adds identity_features")
    p.add_argument(
        "--attribute-model",
        metavar="PATH",
        help="caption-attribute classifier (.safetensors): adds attr_acc and the Fréchet distance "
        "(default: the shipped one where it exists, else none)",
    )
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument(
        "--generate-only", action="store_true", help="write the videos, score nothing (score later with the same --out)"
    )


def cmd_eval(args: argparse.Namespace) -> None:
    from fulldit.eval.fullbench import run

    inputs = {"--bench": args.bench, "--videos": args.videos, "--checkpoint": args.checkpoint}
    _check_output(args.out, "--out", True, inputs)
    _check_input(args.bench, "--bench", directory=True)
    _check_input(args.videos, "--videos", directory=True)
    models = {"--depth-estimator": args.depth_estimator, "--clip": args.clip, "--identity-model": args.identity_model}
    for option, path in models.items():
        if path is not None and not Path(path).exists():
            raise InputError(f"{option} {path}: no such file or directory")
    _check_input(args.attribute_model, "--attribute-model")
    _check_device(args.device)
    metrics = run(
        args.bench,
        args.out,
        checkpoint=args.checkpoint,
        videos=args.videos,
        cases=args.cases,
        combos=args.combos,
        depth_estimator=args.depth_estimator,
        device=args.device,
        steps=args.steps,
        clip_model=args.clip,
        identity_model=args.identity_model,
        score=not args.generate_only,
        attribute_model=args.attribute_model,
    )
    if args.generate_only:
        print(
            f"wrote the videos under {args.out}/videos; score them with the same command without --generate-only, "
            f"or anywhere with --videos {args.out}/videos in place of --checkpoint"
        )
        return
    print(f"wrote {args.out}/metrics.json and report.md ({sum(len(v) for v in metrics['cases'].values())} videos)")
    for r in metrics["effect"]:
        print(f"  {r['condition']:20s} {r['metric']:18s} given {r['given']:.3g}  withheld {r['withheld']:.3g}")


def add_train(sub: Subparsers) -> None:
    p = sub.add_parser("train", help="train a model (CPU, one GPU, or under torchrun with DDP/FSDP2)")
    p.add_argument(
        "--config", metavar="YAML", required=True, help="config with a train: section, e.g. configs/synth-s.yaml"
    )
    p.add_argument("--out", metavar="DIR", required=True, help="run folder: checkpoints/, logs/, samples/, model/")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/latest (start fresh if none)")
    p.add_argument("--init", metavar="DIR", help="start from this checkpoint's weights with a fresh optimizer")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available; torchrun: this rank's GPU)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. train.lr=1e-4")


def cmd_train(args: argparse.Namespace) -> None:
    from fulldit.data.formats import read_manifest
    from fulldit.train.config import load_train_config
    from fulldit.train.loop import train

    if args.init:
        _check_file(args.init)
    _, tcfg = load_train_config(args.config, args.overrides)  # every number checked before anything is written
    data = tcfg.data.path if tcfg.data.source == "folder" else None
    _check_output(args.out, "--out", True, {"--config": args.config, "--init": args.init, "train.data.path": data})
    if data is not None:
        _check_input(data, "train.data.path", directory=True)
        if not read_manifest(data, problems=[]):
            raise InputError(f"train.data.path {data}: the dataset has no usable clips (fulldit-dataset/1)")
    _check_device(args.device)
    out = Path(args.out).absolute()
    new = next((p for p in reversed([out, *out.parents]) if not p.exists()), None)  # the first folder this run makes
    try:
        train(args.config, args.out, args.overrides, args.resume, args.init, args.device)
    except InputError:
        if new is not None and not any(out.glob("checkpoints/*")):  # nothing to resume from: leave nothing behind
            shutil.rmtree(new, ignore_errors=True)
        raise


def add_prepare(sub: Subparsers) -> None:
    p = sub.add_parser(
        "prepare", help="turn a folder of videos, captions and camera files into a dataset folder (fulldit-dataset/1)"
    )
    p.add_argument("src", metavar="SRC", help="SRC/NAME.mp4 + NAME.txt caption [+ NAME.cam.txt, NAME.ref*.png]")
    p.add_argument("--out", metavar="DIR", required=True, help="dataset folder to write (new or empty)")
    p.add_argument("--frames", type=COUNT, help="frames per clip after resampling (default: every frame, one clip)")
    p.add_argument("--fps", type=POSITIVE, help="resample to this frame rate, nearest frames (default: the source's)")
    p.add_argument("--size", type=parse_size, metavar="WxH", help="resize to cover and centre-crop, e.g. 832x480")
    p.add_argument("--clips-per-video", type=COUNT, default=1, help="up to this many consecutive clips of --frames")
    p.add_argument("--captions", metavar="FILE", help="captions.jsonl (default: SRC/captions.jsonl if present)")
    p.add_argument("--cameras", metavar="DIR", help="folder of NAME.txt pose files (default: SRC/cameras)")
    p.add_argument("--boxes", metavar="FILE", help="reference crops, boxes.json (default: SRC/boxes.json)")
    p.add_argument("--depth-model", metavar="DIR", help="transformers depth model (Depth Anything); no depth without")
    p.add_argument("--device", default="cpu", help="device of the depth model (default: cpu)")
    p.add_argument("--skip-bad", action="store_true", help="report and skip broken videos instead of stopping")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run (its .OUT.partial folder)")


def cmd_prepare(args: argparse.Namespace) -> None:
    from fulldit.data.prepare import PrepareOptions, prepare

    _check_input(args.src, "SRC", directory=True)
    _check_output(args.out, "--out", True, {"SRC": args.src})
    _check_input(args.captions, "--captions")
    _check_input(args.cameras, "--cameras", directory=True)
    _check_input(args.boxes, "--boxes")
    _check_input(args.depth_model, "--depth-model", directory=True)
    _check_device(args.device)
    opts = PrepareOptions(
        frames=args.frames,
        fps=args.fps,
        size=args.size,
        clips_per_video=args.clips_per_video,
        captions=Path(args.captions) if args.captions else None,
        cameras=Path(args.cameras) if args.cameras else None,
        boxes=Path(args.boxes) if args.boxes else None,
        depth_model=Path(args.depth_model) if args.depth_model else None,
        device=args.device,
        skip_bad=args.skip_bad,
        resume=args.resume,
    )
    out, written, skipped = prepare(args.src, args.out, opts)
    print(f"wrote {written} clips to {out}" + (f" ({len(skipped)} problems skipped)" if skipped else ""))


def add_convert(sub: Subparsers) -> None:
    p = sub.add_parser(
        "convert",
        help="convert a pretrained Wan2.1 text-to-video model into a fulldit checkpoint, grow one, or write a "
        "text-to-video one as Wan2.1's release",
    )
    p.add_argument(
        "src", metavar="SRC_DIR", help="Wan2.1: a diffusers pipeline or transformer, or the original; else a checkpoint"
    )
    p.add_argument(
        "--from",
        dest="source_format",
        choices=["wan2.1", "open-gates", "deepen", "fulldit"],
        required=True,
        help="what SRC_DIR holds: Wan2.1; a fulldit checkpoint with every condition gate open (written as plain "
        "full attention); a fulldit checkpoint to grow to --layers blocks and/or --text-layers text encoder layers "
        "and/or --text-max-length tokens and/or a depth condition that reads the reprojected first frame "
        "(--depth-reproject; what is new starts as the identity); or "
        "(with --to wan2.1) a fulldit text-to-video checkpoint",
    )
    p.add_argument(
        "--to",
        dest="target_format",
        choices=["fulldit", "wan2.1"],
        default="fulldit",
        help="what to write: a fulldit checkpoint (default), or, --from fulldit, Wan2.1's original release layout "
        "(config.json, diffusion_pytorch_model*.safetensors, and vae/, text_encoder/, tokenizer/ where the "
        "checkpoint has them); the checkpoint must have no conditions",
    )
    p.add_argument("--layers", type=COUNT, help="--from deepen: the grown model's number of blocks")
    p.add_argument(
        "--text-layers", type=COUNT, help="--from deepen: the grown byte-level text encoder's number of layers"
    )
    p.add_argument(
        "--text-max-length",
        type=COUNT,
        help="--from deepen: the byte-level text encoder reads prompts up to this many tokens (bytes + 2); new "
        "position rows start as the encoder initialises them, prompts that fitted encode as before",
    )
    p.add_argument(
        "--depth-reproject",
        action="store_true",
        default=None,
        help="--from deepen: the depth condition also reads the first frame reprojected through the depth and the "
        "camera (model.depth.reproject); its new embedding starts at zero, so outputs are unchanged until trained",
    )
    p.add_argument("--out", metavar="DIR", required=True, help="directory to write")
    p.add_argument(
        "--vae",
        metavar="DIR",
        help="AutoencoderKLWan directory (default: SRC_DIR/vae of a pipeline; --to wan2.1: the checkpoint's)",
    )
    p.add_argument(
        "--text-encoder",
        metavar="DIR",
        help="UMT5 + tokenizer directory (default: SRC_DIR/text_encoder + tokenizer; --to wan2.1: the checkpoint's)",
    )
    p.add_argument(
        "--conditions",
        nargs="*",
        metavar="NAME",
        default=["camera", "reference", "depth"],
        help="condition modules to add, new and gated off until trained (default: camera reference depth)",
    )
    p.add_argument(
        "--dtype", choices=["keep", "float32", "bfloat16"], default="keep", help="storage type of the weights"
    )
    p.add_argument("--text-dtype", choices=["float32", "bfloat16"], default="bfloat16", help="UMT5 compute type")
    p.add_argument("--seed", type=SEED, default=0, help="seed of the new condition modules")
    p.add_argument(
        "--gate",
        choices=["lse", "separate", "none"],
        default="lse",
        help="--from wan2.1: how the new conditions are read: through zero gates merged in one softmax (lse, "
        "default: the backbone's output until trained, FullDiT's attention once open), through zero gates on a "
        "second softmax (separate, as adapters), or appended without a gate as FullDiT does (none)",
    )
    p.add_argument(
        "--gate-init",
        type=number(float, 0, 1),
        default=0.0,
        metavar="G",
        help="--from wan2.1: the gates' start (default 0: the backbone exactly, but a closed gate passes the "
        "condition modules no gradient; a small value such as 0.05 lets them learn from the first step)",
    )
    p.add_argument("--shard-mb", type=POSITIVE, help="output shard size in MB (default: the repository's 14)")


def cmd_convert(args: argparse.Namespace) -> None:
    from fulldit.checkpoint import MAX_SHARD_BYTES
    from fulldit.convert import convert_wan

    _check_input(args.src, "SRC_DIR", directory=True)
    _check_input(args.vae, "--vae", directory=True)
    _check_input(args.text_encoder, "--text-encoder", directory=True)
    inputs = {"SRC_DIR": args.src, "--vae": args.vae, "--text-encoder": args.text_encoder}
    _check_output(args.out, "--out", True, inputs)
    shard = MAX_SHARD_BYTES if args.shard_mb is None else int(args.shard_mb * 10**6)
    if shard <= 0:
        raise InputError(f"--shard-mb {args.shard_mb}: must be at least 1e-6 (one byte)")
    if (args.source_format == "fulldit") != (args.target_format == "wan2.1"):
        raise InputError("--to wan2.1 goes with --from fulldit, and --from fulldit needs --to wan2.1")
    if args.target_format == "wan2.1":
        from fulldit.convert.export_wan import export_wan

        print(export_wan(args.src, args.out, args.vae, args.text_encoder, args.dtype, shard).summary())
        return
    if args.source_format == "open-gates":
        from fulldit.convert import open_gates

        open_gates(args.src, args.out)
        print(f"wrote {args.out}: the open-gated model of {args.src} as plain full attention")
        return
    growth = any(v is not None for v in (args.layers, args.text_layers, args.text_max_length, args.depth_reproject))
    if (args.source_format == "deepen") != growth:
        raise InputError(
            "--layers, --text-layers, --text-max-length and --depth-reproject go with --from deepen, and --from "
            "deepen needs one of them"
        )
    if args.source_format == "deepen":
        from fulldit.convert.deepen import deepen

        cfg = deepen(
            args.src, args.out, args.layers, args.text_layers, args.text_max_length, bool(args.depth_reproject)
        )
        reproject = ", depth with the reprojected first frame (a zero embedding)" if args.depth_reproject else ""
        print(
            f"wrote {args.out}: {args.src} grown to {cfg.model.layers} blocks, text encoder {cfg.text.layers} layers "
            f"reading {cfg.text.max_length} tokens{reproject} (the new layers start as the identity)"
        )
        return
    cfg = convert_wan(
        args.src,
        args.out,
        args.vae,
        args.text_encoder,
        args.conditions,
        args.dtype,
        args.text_dtype,
        args.seed,
        shard,
        args.gate,
        args.gate_init,
    )
    m = cfg.model
    how = f"gated off until trained, {m.gate_merge} merge" if m.condition_gate else "no gate: they act at once"
    if args.gate_init:
        how = f"gates at {args.gate_init:g}, {m.gate_merge} merge"
    print(
        f"wrote {args.out}: Wan2.1 dim {m.dim}, {m.layers} layers, {m.heads} heads + conditions "
        f"{', '.join(m.conditions) or 'none'} ({how}); VAE {cfg.codec.path}, text {cfg.text.path}"
    )


def add_camera(sub: Subparsers) -> None:
    p = sub.add_parser("camera", help="write a camera path from named moves, plot a pose file, convert conventions")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument(
        "--move",
        metavar="NAME",
        help="one move: pan-/truck-/orbit-left|right, tilt-/pedestal-/orbit-up|down, roll-cw|ccw, "
        "dolly-/zoom-in|out, static",
    )
    mode.add_argument("--path", metavar="MOVES", help='moves in turn, e.g. "orbit-left 30deg then dolly-in 0.5"')
    mode.add_argument("--plot", metavar="FILE", help="draw a pose file as camera frusta from above and the side")
    mode.add_argument("--convert", metavar="FILE", help="rewrite a pose file from --from's convention in --to's")
    amount = p.add_mutually_exclusive_group()
    amount.add_argument("--degrees", type=FINITE, help="--move amount of pan, tilt, roll, orbit (default 30)")
    amount.add_argument("--distance", type=FINITE, help="--move amount of dolly, truck, pedestal, scene units (0.5)")
    amount.add_argument(
        "--zoom", type=number(float, 1), metavar="RATIO", help="--move amount of zoom: ratio >= 1 (1.5)"
    )
    p.add_argument("--frames", type=number(int, 2), default=16, help="frames of the path (default 16)")
    p.add_argument("--width", type=COUNT, default=128, help="frame width in pixels (default 128)")
    p.add_argument("--height", type=COUNT, default=128, help="frame height in pixels (default 128)")
    p.add_argument(
        "--fov",
        type=number(float, 0, 180, open_low=True, open_high=True),
        default=60.0,
        help="horizontal field of view in degrees (default 60)",
    )
    p.add_argument(
        "--target-distance", type=POSITIVE, default=2.0, help="orbit target, scene units ahead of frame 0 (default 2)"
    )
    p.add_argument("--ease", default="linear", help="linear (default) or smooth (each move starts and stops at rest)")
    p.add_argument(
        "--convention",
        "--from",
        dest="convention",
        metavar="CONV",
        help="matrices of the file read by --plot/--convert: opencv (w2c, default), c2w or opengl",
    )
    p.add_argument("--to", metavar="CONV", help="matrices of the file written: opencv (w2c, default), c2w or opengl")
    p.add_argument("-o", "--output", metavar="OUT", help="pose file (.txt RealEstate10K or .json), or --plot's .png")


def cmd_camera(args: argparse.Namespace) -> None:
    from fulldit.camera import build_path, describe, load_camera_as, make_move, parse_moves, save_camera_as
    from fulldit.camera.plot import plot_path

    given = {"--degrees": args.degrees, "--distance": args.distance, "--zoom": args.zoom}
    flag, amount = next(((k, v) for k, v in given.items() if v is not None), (None, None))
    if flag and not args.move:
        raise InputError(f"{flag} goes with --move; write amounts into --path, e.g. 'orbit-left 30deg'")
    source_file = args.plot or args.convert
    if source_file:
        _check_input(source_file, "--plot" if args.plot else "--convert")
    if args.output:
        _check_output(args.output, "-o", False, {"--plot": args.plot, "--convert": args.convert})
    if source_file:
        cam = load_camera_as(source_file, args.convention or "opencv")
        if args.plot:
            if args.to:
                raise InputError("--to is for the pose files that --move, --path and --convert write")
            out = args.output or Path(args.plot).with_suffix(".png")
            plot_path(cam, out, f"{args.plot}: {cam.num_frames} cameras")
            print(f"wrote {out}")
            return
        source = f"converted from {args.convention or 'opencv'}"
    else:
        if args.convention:
            raise InputError("--convention/--from is for files read by --plot and --convert; use --to to write")
        if args.move:
            need = {"deg": "--degrees", "units": "--distance", "x": "--zoom"}.get(make_move(args.move).unit)
            if flag and need != flag:
                raise InputError(f"{args.move} takes {need or 'no amount'}, not {flag}")
            moves = [make_move(args.move, amount)]
        else:
            moves = parse_moves(args.path)
        cam = build_path(moves, args.frames, args.width, args.height, args.fov, args.target_distance, args.ease)
        source = f"{describe(moves)}; {args.frames} frames, {args.width}x{args.height}, fov {args.fov:g} deg"
    if not args.output:
        raise InputError("say where to write the pose file: -o OUT.txt (RealEstate10K) or OUT.json")
    save_camera_as(cam, args.output, args.to or "opencv", url=f"fulldit camera: {source}")
    print(f"wrote {args.output}: {cam.num_frames} cameras ({source}), {args.to or 'opencv'} matrices")


def _check_address(host: str, port: int | None) -> None:
    """--host must resolve, and a given --port must be free there (before the model is loaded)."""
    import socket

    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port or 0, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as err:
        raise InputError(f"--host {host}: not an address of this machine ({err})") from None
    if port is None:
        return
    with socket.socket(family, kind) as sock:
        try:
            sock.bind(address)
        except OSError as err:
            raise InputError(f"--host {host} --port {port}: cannot serve there ({err.strerror or err})") from None


def add_demo(sub: Subparsers) -> None:
    p = sub.add_parser("demo", help="a local web page (Gradio) to generate with any mix of conditions")
    p.add_argument("--checkpoint", metavar="DIR", help="checkpoint directory (default: the shipped default model)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=number(int, 1, 65535), help="port (default: the first free one from 7860)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")


def cmd_demo(args: argparse.Namespace) -> None:
    import importlib.util

    if importlib.util.find_spec("gradio") is None:
        raise InputError('the demo needs Gradio: pip install -e ".[demo]"')
    ckpt = Path(args.checkpoint) if args.checkpoint else default_checkpoint()
    _check_file(str(ckpt))  # before importing Gradio and loading the model
    _check_device(args.device)
    _check_address(args.host, args.port)
    from fulldit.demo import launch

    launch(ckpt, host=args.host, port=args.port, device=args.device)


# name -> (define its options, run it); `fulldit --help` lists the commands in this order
COMMANDS: dict[str, tuple[Callable[[Subparsers], None], Callable[[argparse.Namespace], None]]] = {
    "generate": (add_generate, cmd_generate),
    "info": (add_info, cmd_info),
    "init": (add_init, cmd_init),
    "synth": (add_synth, cmd_synth),
    "eval": (add_eval, cmd_eval),
    "train": (add_train, cmd_train),
    "prepare": (add_prepare, cmd_prepare),
    "convert": (add_convert, cmd_convert),
    "camera": (add_camera, cmd_camera),
    "demo": (add_demo, cmd_demo),
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _, run = COMMANDS[args.command]
        run(args)
    except InputError as err:
        message = " ".join(str(err).split())  # one line, whatever a library put in the message
        sys.stderr.write(f"fulldit: error: {message}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("fulldit: interrupted\n")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
