"""Write the example condition files the README's main command uses (deterministic; re-run to regenerate).

The default model knows the synthetic world and nothing else, so the examples are one clip of that world: the
first seed from EXAMPLE_SEED_BASE whose scene holds one object and whose camera orbits left. That seed range is
used by nothing else (training seeds are below 10^8, validation worlds start at 5 x 10^11, FullBench at 10^12),
so the README shows the model on a world it never saw.
    orbit.txt        16-frame camera path, RealEstate10K format
    depth.npz        its metric depth, (16, 128, 128) float32 under key "depth"
    first_frame.png  frame 0 of the clip
    reference.png    the object alone, seen from another side (the identity reference)
    prompt.txt       the clip's caption, the README's --prompt

    python examples/make_examples.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fulldit.camera import save_camera_re10k
from fulldit.video_io import write_image
from fulldit.world.clips import plan_clip, render_plans

HERE = Path(__file__).resolve().parent
SIZE, FRAMES = 128, 16
EXAMPLE_SEED_BASE = 7 * 10**11


def example_seed() -> int:
    """The first seed from EXAMPLE_SEED_BASE with one object and an orbit to the left."""
    seed = EXAMPLE_SEED_BASE
    while True:
        plan = plan_clip(seed, FRAMES, SIZE, SIZE, references_per_object=1, moves=["orbit-left"])
        if len(plan.scene.objects()) == 1:
            return seed
        seed += 1


def main() -> None:
    seed = example_seed()
    plan = plan_clip(seed, FRAMES, SIZE, SIZE, references_per_object=1, moves=["orbit-left"])
    clip = render_plans([plan], SIZE, SIZE)[0]
    save_camera_re10k(clip.camera, HERE / "orbit.txt", url=f"fulldit examples/make_examples.py: world seed {seed}")
    np.savez_compressed(HERE / "depth.npz", depth=clip.depth.numpy().astype(np.float32))
    write_image(HERE / "first_frame.png", clip.video[0])
    write_image(HERE / "reference.png", clip.references[0])
    (HERE / "prompt.txt").write_text(clip.caption + "\n")
    print(f"wrote {HERE}/orbit.txt, depth.npz, first_frame.png, reference.png, prompt.txt (world seed {seed}):")
    print(clip.caption)


if __name__ == "__main__":
    main()
