"""The pipeline: every condition steers generation, frames are kept, guidance and caching are exact."""

from __future__ import annotations

import pytest
import torch

from fulldit.camera import build_path
from fulldit.errors import InputError
from fulldit.generate import Pipeline, Request, guidance_branches
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


def test_cached_and_uncached_sampling_agree() -> None:
    pipe = pipeline("isolated")
    torch.testing.assert_close(
        pipe.generate(full_request(), use_cache=True), pipe.generate(full_request(), use_cache=False), atol=1e-5, rtol=0
    )


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
