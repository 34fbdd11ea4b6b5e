"""`fulldit demo`: a local web page (Gradio) that generates with one loaded checkpoint from any mix of conditions.

The model is loaded once, at startup. Each Generate turns the page's uploads into a `Request` with
`Request.from_files`, the code path of `fulldit generate`, so the page accepts the same file formats and reports
the same errors: bad input (`InputError`: a malformed pose file, a wrong frame count, NaN depth ...) is shown in
the status line and the server keeps serving. Gradio takes seconds to import, so it is imported only here, inside
functions: other commands never pay for it.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fulldit.camera import CONVENTIONS, MOVE_NAMES, CameraPath, build_path, load_camera_as
from fulldit.camera.plot import plot_path
from fulldit.errors import InputError
from fulldit.generate import Pipeline, Request
from fulldit.preview import condition_thumbnails
from fulldit.video_io import VIDEO_SUFFIXES, write_preview, write_video

if TYPE_CHECKING:
    import gradio as gr

NO_CAMERA = "none"
PRESETS = (NO_CAMERA, *MOVE_NAMES, "orbit-left 30deg then dolly-in 0.5", "pan-right 20deg then zoom-in 1.5x")
IMAGE_TYPES = [".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"]
DEPTH_TYPES = [".npz", ".npy", *sorted(VIDEO_SUFFIXES)]
# Fonts the browser already has: Gradio's default theme fetches Google Fonts, which a local demo should not need.
FONTS = (["ui-sans-serif", "system-ui", "sans-serif"], ["ui-monospace", "monospace"])
UPLOAD_HEIGHT = 150  # pixels of each upload box: the whole form fits on one screen


def _int(value: float | None, default: int) -> int:
    """A Gradio number (a float, or None when the box is empty) as an int."""
    return default if value is None else int(value)


def _readable(err: Exception, uploads: list[str]) -> str:
    """The error message with Gradio's temporary upload folders cut from the file names the user chose."""
    text = str(err)
    for path in sorted(uploads, key=len, reverse=True):
        text = text.replace(path, Path(path).name)
    return text


class Demo:
    """The page's callbacks around one loaded pipeline; outputs go to a fresh temporary folder."""

    def __init__(self, pipe: Pipeline):
        self.pipe = pipe
        self.out_dir = Path(tempfile.mkdtemp(prefix="fulldit-demo-"))
        self.count = itertools.count(1)

    def camera(
        self, preset: str, moves: str, pose_file: str | None, convention: str, frames: int
    ) -> tuple[CameraPath | None, str]:
        """The camera of the page and where it came from: the pose file, else the move string, else the preset."""
        s = self.pipe.config.sample
        if pose_file:
            return load_camera_as(pose_file, convention), Path(pose_file).name
        text = (moves or "").strip() or (preset if preset != NO_CAMERA else "")
        if not text:
            return None, ""
        return build_path(text, frames=frames, width=s.width, height=s.height), text

    def show_camera(
        self, preset: str, moves: str, pose_file: str | None, convention: str, frames: float | None
    ) -> tuple[str | None, str]:
        """(plot png, status) for the camera inputs as they are now."""
        try:
            n = _int(frames, self.pipe.config.sample.frames)
            cam, source = self.camera(preset, moves, pose_file, convention, n)
        except InputError as err:
            return None, f"**Camera error:** {_readable(err, [pose_file or ''])}"
        if cam is None:
            return None, "No camera: the model chooses the motion."
        png = plot_path(cam, self.out_dir / f"camera-{next(self.count)}.png", f"{source}: {cam.num_frames} cameras")
        mismatch = f", but Frames is {n}: set it to {cam.num_frames}" if cam.num_frames != n else ""
        return str(png), f"Camera: {cam.num_frames} poses from {source}{mismatch}."

    def generate(
        self,
        prompt: str,
        preset: str,
        moves: str,
        pose_file: str | None,
        convention: str,
        references: list[str] | None,
        depth: str | None,
        first_frame: str | None,
        prefix: str | None,
        last_frame: str | None,
        frames: float | None,
        steps: float | None,
        seed: float | None,
        guidance: float | None,
        text_guidance: float | None,
        progress: Callable[..., object] | None = None,
    ) -> tuple[str | None, str | None, list[str] | None, str]:
        """(video, preview png, downloads, status) for the page's inputs; bad input only changes the status."""
        s = self.pipe.config.sample
        uploads = [p for p in [pose_file, depth, first_frame, prefix, last_frame, *(references or [])] if p]
        start = time.perf_counter()
        try:
            n = _int(frames, s.frames)
            cam, source = self.camera(preset, moves, pose_file, convention, n)
            req = Request.from_files(
                camera=cam,
                references=references or [],
                depth=depth,
                first_frame=first_frame,
                prefix=prefix,
                last_frame=last_frame,
                prompt=prompt or "",
                frames=n,
                steps=_int(steps, s.steps),
                seed=_int(seed, s.seed),
                guidance=s.guidance if guidance is None else float(guidance),
                text_guidance=s.text_guidance if text_guidance is None else float(text_guidance),
            )
            if source:
                req.sources["camera"] = source
            on_step = None if progress is None else lambda i, total: progress((i, total), desc="denoising")
            video = self.pipe.generate(req, on_step=on_step)
        except InputError as err:
            return None, None, None, f"**Error:** {_readable(err, uploads)}"
        out = self.out_dir / f"fulldit-{next(self.count):03d}-seed{req.seed}.mp4"
        write_video(out, video, fps=s.fps)
        write_preview(out.with_suffix(".png"), video, condition_thumbnails(req))
        took = time.perf_counter() - start
        status = f"Generated {video.shape[0]} frames at {video.shape[3]}x{video.shape[2]} in {took:.1f} s ({out.name})."
        return str(out), str(out.with_suffix(".png")), [str(out), str(out.with_suffix(".png"))], status


def _gradio() -> Any:
    """The gradio module, imported on first use (it takes seconds); a local demo sends no usage analytics."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio

    return gradio


def build_app(pipe: Pipeline, name: str = "") -> gr.Blocks:
    """The page: inputs on the left, the generated video, its preview sheet and the downloads on the right."""
    gr = _gradio()
    demo, s = Demo(pipe), pipe.config.sample
    with gr.Blocks(title="fulldit demo") as app:
        gr.Markdown(
            f"# fulldit demo\n`{name or 'model'}`: {s.frames} frames at {s.width}x{s.height} by default. Give any mix "
            "of conditions; file formats as for `fulldit generate` (see the README)."
        )
        with gr.Row():
            with gr.Column():
                prompt = gr.Textbox(label="Prompt", lines=2, elem_id="prompt")
                with gr.Group():
                    with gr.Row():
                        preset = gr.Dropdown(list(PRESETS), value=NO_CAMERA, label="Camera preset", elem_id="preset")
                        moves = gr.Textbox(
                            label="or moves (override the preset)",
                            placeholder="orbit-left 30deg then dolly-in 0.5",
                            elem_id="moves",
                        )
                    with gr.Row():
                        pose_file = gr.File(
                            label="or a pose file, .txt RealEstate10K / .json (overrides both)",
                            file_types=[".txt", ".json"],
                            height=UPLOAD_HEIGHT,
                            elem_id="camera-file",
                        )
                        convention = gr.Dropdown(list(CONVENTIONS), value="opencv", label="pose convention")
                    camera_plot = gr.Image(label="Camera path", type="filepath", interactive=False, elem_id="plot")
                with gr.Row():
                    references = gr.File(
                        label="Reference images (identity)",
                        file_count="multiple",
                        file_types=IMAGE_TYPES,
                        height=UPLOAD_HEIGHT,
                        elem_id="refs",
                    )
                    depth = gr.File(
                        label="Depth: .npz/.npy metric, or a greyscale video",
                        file_types=DEPTH_TYPES,
                        height=UPLOAD_HEIGHT,
                        elem_id="depth",
                    )
                with gr.Row():
                    first_frame = gr.Image(
                        label="First frame", type="filepath", sources=["upload"], height=UPLOAD_HEIGHT, elem_id="first"
                    )
                    prefix = gr.File(label="Prefix video", file_types=sorted(VIDEO_SUFFIXES), height=UPLOAD_HEIGHT)
                    last_frame = gr.Image(label="Last frame", type="filepath", sources=["upload"], height=UPLOAD_HEIGHT)
                with gr.Accordion("Sampling", open=True):
                    with gr.Row():
                        frames = gr.Number(s.frames, label="Frames", precision=0, minimum=1)
                        steps = gr.Slider(1, 100, value=s.steps, step=1, label="Steps", elem_id="steps")
                        seed = gr.Number(s.seed, label="Seed", precision=0)
                    with gr.Row():
                        guidance = gr.Number(s.guidance, label="Condition guidance (1 = off)")
                        text_guidance = gr.Number(s.text_guidance, label="Text guidance (1 = off)")
                button = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Column():
                status = gr.Markdown("Ready.", elem_id="status")
                video = gr.Video(label="Video", interactive=False, elem_id="video", autoplay=True, loop=True)
                preview = gr.Image(label="Preview sheet", type="filepath", interactive=False, elem_id="preview")
                downloads = gr.File(label="Download", file_count="multiple", interactive=False, elem_id="downloads")

        camera_inputs = [preset, moves, pose_file, convention, frames]
        for trigger in [preset.change, moves.submit, moves.blur, pose_file.change, convention.change, frames.change]:
            trigger(demo.show_camera, camera_inputs, [camera_plot, status])

        def generate(*values: Any, progress: gr.Progress = gr.Progress()) -> tuple:  # noqa: B008 (Gradio's idiom)
            return demo.generate(*values, progress=progress)

        inputs = [prompt, preset, moves, pose_file, convention, references, depth, first_frame, prefix, last_frame]
        inputs += [frames, steps, seed, guidance, text_guidance]
        button.click(generate, inputs, [video, preview, downloads, status])
    return app


def launch(
    checkpoint: str | Path,
    host: str = "127.0.0.1",
    port: int | None = None,
    device: str | None = None,
    block: bool = True,
) -> gr.Blocks:
    """Load `checkpoint` once and serve the page at http://host:port (port None: the first free one from 7860).

    block=False returns once the server is up (tests); call `.close()` on the result to stop it.
    """
    gr = _gradio()
    pipe = Pipeline.from_pretrained(checkpoint, device=device)
    app = build_app(pipe, Path(checkpoint).name)
    theme = gr.themes.Default(font=FONTS[0], font_mono=FONTS[1])
    app.queue(default_concurrency_limit=1)  # one model: one generation at a time, the rest wait in the queue
    app.launch(server_name=host, server_port=port, prevent_thread_lock=not block, show_error=True, theme=theme)
    return app
