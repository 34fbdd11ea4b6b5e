"""The synthetic world: seeded rooms with named objects, rendered with exact depth, cameras and identity references.

clips.py         a seed -> a clip plan (room, objects, camera move, reference views, caption) -> a rendered Clip
render.py        the batched ray caster (CPU or GPU): video, metric depth, object ids
trajectories.py  camera moves inside a room, named as fulldit.camera.moves names them
dataset.py       index i -> the world of seed `seed + i`: how training splits the world over processes
synth.py         `fulldit synth`: dataset folders and the FullBench-Synth benchmark split
"""

from fulldit.world.clips import ClipPlan, plan_clip, render_batch, render_clip, render_plans
from fulldit.world.dataset import BENCH_SEED_BASE, WorldPlans

__all__ = ["BENCH_SEED_BASE", "ClipPlan", "WorldPlans", "plan_clip", "render_batch", "render_clip", "render_plans"]
