"""The pipeline: every condition steers generation, frames are kept, guidance and caching are exact."""

from __future__ import annotations

import pytest
import torch

from fulldit.camera import build_path
from fulldit.errors import InputError
from fulldit.generate import Pipeline, Request, branch_inputs, guidance_branches
from tests.conftest import randomize, tiny_config

F, S = 4, 16


def pipeline(attention: str = "isolated", **kw) -> Pipeline:
    torch.manual_seed(0)
    pipe = Pipeline.from_config(tiny_config(attention=attention, **kw))
    randomize(pipe.model)
    pipe.model.eval()
    return pipe


def full_request(**kw) -> Request:
    g = torch.Generator().manual_seed(7)
    base = dict(
        prompt="a red sphere on a checkered floor",
        camera=build_path("orbit-left 0.5rad", F),
        references=[torch.rand(3, 24, 20, generator=g)],
        depth=torch.rand(F, S, S, generator=g) + 0.5,
        seed=3,
    )
    base.update(kw)
    return Request(**base)


def test_deterministic_per_seed() -> None:
    pipe = pipeline()
    a, b = pipe.generate(full_request()), pipe.generate(full_request())
    assert a.shape == (F, 3, S, S) and 0 <= a.min() and a.max() <= 1
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, pipe.generate(full_request(seed=4)))


@pytest.mark.parametrize("name", ["prompt", "camera", "references", "depth"])
def test_each_condition_changes_the_video(name: str) -> None:
    pipe = pipeline()
    with_all = pipe.generate(full_request())
    empty = {"prompt": "", "camera": None, "references": [], "depth": None}[name]
    without = pipe.generate(full_request(**{name: empty}))
    assert (with_all - without).abs().mean() > 1e-3


@pytest.mark.parametrize("guidance", [2.0, 4.0])  # rows (text+conditions, neither); and one with conditions only
def test_cached_and_uncached_sampling_agree(guidance: float) -> None:
    pipe = pipeline("isolated")
    req = full_request(guidance=guidance, text_guidance=2.0)
    cached, uncached = pipe.generate(req, use_cache=True), pipe.generate(req, use_cache=False)
    torch.testing.assert_close(cached, uncached, atol=1e-5, rtol=0)


def test_condition_cache_runs_only_the_samples_with_conditions() -> None:
    """A guidance row without conditions (every condition key masked) borrows a live row's keys/values: the cache
    of the live rows is what they get alone, and the blocks ran on them only."""
    pipe = pipeline("isolated")
    model, cond = pipe.model, pipe.condition_inputs(pipe._resolve(full_request()))
    grid = model.grid((1, pipe.config.model.in_channels, pipe.codec.latent_frames(F), *pipe.codec.latent_size(S, S)))
    context, mask = pipe.text_encoder.encode(["a red sphere", "", "a cube"])
    on = torch.tensor([True, False, True])
    rows_seen = []
    original = model.blocks[0].condition_kv
    model.blocks[0].condition_kv = lambda xc, *a, **k: (rows_seen.append(xc.shape[0]), original(xc, *a, **k))[1]
    cache = model.condition_cache(branch_inputs(cond, on), grid, context, mask)
    assert rows_seen == [2] and cache.kv[0][0].shape[0] == 3 and cache.packed.tokens.shape[0] == 3
    for row in (0, 2):
        i = torch.tensor([row])
        alone = model.condition_cache(branch_inputs(cond, on[i]), grid, context[i], mask[i])
        for got, want in zip(cache.rows(i).kv, alone.kv):
            torch.testing.assert_close(got[0], want[0], atol=1e-5, rtol=0)
            torch.testing.assert_close(got[1], want[1], atol=1e-5, rtol=0)


def test_guidance_interval_runs_the_conditioned_branch_alone_below_it() -> None:
    """guidance_min_t 0.6 with 4 steps at shift 1 (t = 1, .75, .5, .25): two guided steps (both rows), then the
    text + conditions row alone; 0 is every step guided, and a single unguided row ignores it."""
    pipe = pipeline("isolated")
    calls = []
    forward = pipe.model.forward

    def spy(x, t, context, context_mask=None, conditions=None, cache=None, parallel=None):
        calls.append((x.shape[0], float(t.max()), context[0].abs().sum().item(), cache.packed.mask))
        return forward(x, t, context, context_mask, conditions, cache, parallel)

    pipe.model.forward = spy
    req = full_request(steps=4, shift=1.0)
    every = pipe.generate(req)
    assert torch.equal(every, pipe.generate(req, guidance_min_t=0.0)) and [c[0] for c in calls] == [2] * 8
    calls.clear()
    interval = pipe.generate(req, guidance_min_t=0.6)
    assert [(c[0], round(c[1], 2)) for c in calls] == [(2, 1.0), (2, 0.75), (1, 0.5), (1, 0.25)]
    prompt_features = calls[0][2]
    assert all(c[2] == prompt_features for c in calls)  # the first row, the prompt's, leads every call
    assert all(c[3] is None or bool(c[3][0].any()) for c in calls)  # and has its conditions
    assert (interval - every).abs().mean() > 1e-4
    single = full_request(steps=4, shift=1.0, guidance=1.0, text_guidance=1.0)
    assert torch.equal(pipe.generate(single), pipe.generate(single, guidance_min_t=0.6))
    with pytest.raises(InputError, match="guidance_min_t 1.5"):
        pipe.generate(req, guidance_min_t=1.5)


def test_frame_conditions_are_kept_exactly() -> None:
    pipe = pipeline("full")
    g = torch.Generator().manual_seed(1)
    first, last = torch.rand(3, S, S, generator=g), torch.rand(3, S, S, generator=g)
    video = pipe.generate(full_request(first_frame=first, last_frame=last))
    torch.testing.assert_close(video[0], first, atol=1e-5, rtol=0)  # pixel codec: replacement is exact
    torch.testing.assert_close(video[-1], last, atol=1e-5, rtol=0)
    prefix = torch.rand(2, 3, S, S, generator=g)
    torch.testing.assert_close(pipe.generate(full_request(prefix=prefix))[:2], prefix, atol=1e-5, rtol=0)


def test_guidance_rows_are_an_affine_combination() -> None:
    """Weights sum to 1, and with equal scales the rows reduce to STIV's joint CFG."""
    for has, s_c, s_t in [(True, 3.0, 5.0), (True, 2.0, 2.0), (False, 1.0, 4.0), (True, 1.0, 1.0)]:
        rows = guidance_branches(has, s_c, s_t)
        assert sum(w for *_, w in rows) == pytest.approx(1.0)
    assert guidance_branches(True, 2.0, 2.0) == [(True, True, 2.0), (False, False, -1.0)]
    assert guidance_branches(True, 1.0, 1.0) == [(True, True, 1.0)]


def test_request_errors() -> None:
    pipe = pipeline()
    with pytest.raises(InputError, match="cam.txt: 5 camera poses, but the video has 4 frames"):
        pipe.generate(full_request(camera=build_path("pan-left 1rad", 5), sources={"camera": "cam.txt"}))
    with pytest.raises(InputError, match="3 depth frames"):
        pipe.generate(full_request(depth=torch.rand(3, S, S) + 0.5))
    with pytest.raises(InputError, match="at most 4"):
        pipe.generate(full_request(references=[torch.rand(3, S, S)] * 5))
    with pytest.raises(InputError, match="size 18x16"):
        pipe.generate(full_request(height=18, depth=None))
    with pytest.raises(InputError, match="all 4 frames"):
        pipe.generate(full_request(prefix=torch.rand(4, 3, S, S)))
    no_depth = pipeline(conditions=("camera",))
    with pytest.raises(InputError, match="no depth condition"):
        no_depth.generate(full_request(references=[]))
