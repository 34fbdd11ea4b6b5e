"""Generation across processes (gloo on CPU): 2 and 3 ranks make the video of one process, each rank its share.

Each world size is one torch.multiprocessing.spawn running every case (layouts, cache, modes), so the cost of
starting processes is paid once; the CLI under torchrun is checked on the written files.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fulldit.camera import build_path, save_camera_re10k
from fulldit.config import load_config
from fulldit.errors import InputError
from fulldit.generate import Pipeline, Request
from fulldit.parallel import layout
from fulldit.video_io import read_video, write_image
from tests.conftest import randomize

REPO = Path(__file__).resolve().parent.parent
F, S = 4, 32  # 4 frames of 32x32: pixel codec (1, 4, 4), patch (1, 2, 2) -> 4 x 4 x 4 = 64 video tokens
VIDEO_TOKENS = 64
# configs/tiny.yaml, narrower (6 heads, so 2 and 3 ranks both split them) and with one token frame per latent frame
# (a first frame then gives per-frame modulation, which the bands of rows must keep)
SMALL = ["model.dim=96", "model.heads=6", "model.ffn_dim=192", "model.layers=3", "model.patch=[1,2,2]",
         "model.camera.frames_per_token=1", f"sample.frames={F}", f"sample.height={S}", f"sample.width={S}",
         "sample.steps=3"]  # fmt: skip
MODELS = {
    "isolated": [],
    "full": ["model.attention=full"],
    # gate per head (sliced with the heads), a block without conditions (video-only attention), the cache
    "gated": ["model.condition_gate=true", "model.condition_layers=[0,1]"],
}


def every_condition() -> Request:
    g = torch.Generator().manual_seed(7)
    return Request(
        prompt="a red sphere on a checkered floor",
        camera=build_path("orbit-left 0.5rad", F),
        references=[torch.rand(3, 24, 20, generator=g), torch.rand(3, S, S, generator=g)],
        depth=torch.rand(F, S, S, generator=g) + 0.5,
        first_frame=torch.rand(3, S, S, generator=g),
        guidance=2.0,
        text_guidance=4.0,  # unequal scales: 3 guidance branches
        seed=3,
    )


# (name, model, mode, use_cache, text only, weights sharded with FSDP2)
CASES = [
    *[(f"{m}-{mode}", m, mode, True, False, False) for m in MODELS for mode in ("cfg", "sequence", "auto")],
    *[
        (f"{m}-{mode}-nocache", m, mode, False, False, False)
        for m in ("isolated", "gated")
        for mode in ("cfg", "sequence")
    ],
    *[(f"text-{mode}", "isolated", mode, True, True, False) for mode in ("cfg", "sequence", "auto")],
    ("gated-sharded", "gated", "sequence", True, False, True),
    ("full-sharded", "full", "auto", True, False, True),
]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("parallel")
    for name, overrides in MODELS.items():
        torch.manual_seed(0)
        pipe = Pipeline.from_config(load_config(REPO / "configs/tiny.yaml", SMALL + overrides))
        randomize(pipe.model, std=0.1)
        for block in pipe.model.blocks if pipe.model.cfg.condition_gate else []:  # a different gate per head
            block.cond_gate.data = torch.linspace(0.1, 0.9, pipe.model.cfg.heads)
        pipe.save_pretrained(d / name)
    return d


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(text_only: bool) -> Request:
    return Request(prompt="a red sphere on a checkered floor", seed=3) if text_only else every_condition()


def _generate_all(rank: int, world: int, port: int, root: Path) -> None:
    """One rank: every case, its video and what its blocks were given (rows x tokens, attention heads)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    from fulldit import attention
    from fulldit.model import Block
    from fulldit.parallel import Parallel, init_distributed

    init_distributed("cpu")
    seen: dict[str, list] = {"tokens": [], "heads": []}
    project, sdpa = Block.project, attention.sdpa

    def spy_project(self: Block, x: torch.Tensor, *args):
        seen["tokens"].append(tuple(x.shape[:2]))  # (rows, tokens) projected
        return project(self, x, *args)

    def spy_sdpa(q: torch.Tensor, *args):
        seen["heads"].append(tuple(q.shape[1:3]))  # (queries, heads) of each attention call
        return sdpa(q, *args)

    Block.project, attention.sdpa = spy_project, spy_sdpa
    for name, model, mode, use_cache, text_only, shard in CASES:
        seen["tokens"], seen["heads"] = [], []
        pipe = Pipeline.from_pretrained(root / model, device="cpu", parallel=Parallel(mode, shard_weights=shard))
        video = pipe.generate(_request(text_only), use_cache=use_cache)
        blocks = list(pipe.model.blocks.parameters())  # the weights that matter (the rest stays gathered after use)
        held = sum(getattr(p, "_local_tensor", p).numel() for p in blocks) / sum(p.numel() for p in blocks)
        torch.save({"video": video, "weights": held, **seen}, root / f"{name}-{world}-{rank}.pt")
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def reference(checkpoints: Path) -> dict[str, dict]:
    """Every case in this one process, without parallelism, with what its blocks were given."""
    from fulldit.model import Block

    out = {}
    for name, model, _, use_cache, text_only, _ in CASES:
        pipe = Pipeline.from_pretrained(checkpoints / model, device="cpu")
        tokens, project = [], Block.project
        Block.project = lambda self, x, *a, _p=project, _t=tokens: (_t.append(tuple(x.shape[:2])), _p(self, x, *a))[1]
        try:
            out[name] = {"video": pipe.generate(_request(text_only), use_cache=use_cache), "tokens": tokens}
        finally:
            Block.project = project
    return out


@pytest.fixture(scope="module")
def runs(checkpoints: Path) -> dict[int, dict[str, list[dict]]]:
    """{world: {case: [what rank r returned and saw]}} for 2 and 3 ranks."""
    out = {}
    for world in (2, 3):
        mp.spawn(_generate_all, args=(world, _free_port(), checkpoints), nprocs=world, join=True)
        out[world] = {
            name: [torch.load(checkpoints / f"{name}-{world}-{r}.pt") for r in range(world)] for name, *_ in CASES
        }
    return out


needs_gloo = pytest.mark.skipif(not dist.is_gloo_available(), reason="torch.distributed with gloo is not available")


@needs_gloo
@pytest.mark.parametrize("world", [2, 3])
def test_ranks_make_the_video_of_one_process(runs: dict, reference: dict, world: int) -> None:
    for name, *_ in CASES:
        ranks = runs[world][name]
        for r, got in enumerate(ranks):  # every rank returns the video
            diff = (got["video"] - reference[name]["video"]).abs().max()
            assert diff <= 1e-4, (name, r, diff)  # measured: at most 4.3e-6
        # nobody projects as many tokens as one process, and together no more than it (cfg: less, as a rank whose
        # branches have no conditions leaves the condition tokens out)
        work = [sum(b * n for b, n in got["tokens"]) for got in ranks]
        whole = sum(b * n for b, n in reference[name]["tokens"])
        assert max(work) < whole and sum(work) <= whole, (name, work, whole)
        weights = [got["weights"] for got in ranks]
        if name.endswith("sharded"):  # FSDP2: each rank holds about 1/world of the blocks' weights
            assert max(weights) < 1.05 / world and sum(weights) >= 1, (name, weights)
        else:
            assert weights == [1.0] * world


@needs_gloo
def test_each_rank_computes_only_its_share(runs: dict) -> None:
    """Rows, tokens and heads of each rank's blocks: 3 guidance branches, every condition, full layout."""
    # cfg on 2 ranks: branches (text+conditions, conditions) on rank 0, (neither) on rank 1, all tokens, all heads
    r0, r1 = runs[2]["full-cfg"]
    assert {b for b, _ in r0["tokens"]} == {2} and {b for b, _ in r1["tokens"]} == {1}
    assert {n for _, n in r1["tokens"]} == {VIDEO_TOKENS}  # its branch has no condition tokens at all
    cond = {n for _, n in r0["tokens"]} - {VIDEO_TOKENS}
    assert len(cond) == 1 and {h for _, h in r0["heads"]} == {6}
    nc = cond.pop()
    # sequence on 3 ranks: all 3 branches, bands of 2, 1, 1 of the 4 token rows; the self-attention sees every
    # token with a third of the heads, the text cross-attention all heads of this rank's tokens
    video = [16 * rows for rows in (2, 1, 1)]
    for r, got in enumerate(runs[3]["full-sequence"]):
        cond_r = nc // 3 + (r < nc % 3)
        assert set(got["tokens"]) == {(3, video[r]), (3, cond_r)}, (r, set(got["tokens"]))
        assert {(q, h) for q, h in got["heads"] if h != 2} == {(video[r], 6), (cond_r, 6)}
        assert (VIDEO_TOKENS + nc, 2) in got["heads"]  # full layout: one softmax over all tokens
    # the condition cache (isolated) is split too: each rank projects its share of the condition tokens, once, for
    # the 2 branches that have conditions (the third's keys are all masked: it borrows theirs)
    for got in runs[2]["isolated-sequence"]:
        assert sorted(got["tokens"]).count((2, nc // 2)) == 3  # one per block, at the cache
        assert {n for _, n in got["tokens"]} == {VIDEO_TOKENS // 2, nc // 2}


def test_layout_choice() -> None:
    assert layout("auto", 2, 3, 12) == (1, 2)  # 3 branches on 2 ranks: split the sequence
    assert layout("auto", 2, 2, 12) == (2, 1)  # 2 branches on 2 ranks: one branch each
    assert layout("auto", 4, 2, 12) == (2, 2)  # then the sequence within each branch group
    assert layout("auto", 6, 3, 12) == (3, 2)
    assert layout("auto", 8, 3, 12) == (2, 4)  # 8 ranks do not divide 12 heads
    assert layout("auto", 3, 3, 2) == (3, 1)
    assert layout("cfg", 2, 3, 12) == (2, 1) and layout("sequence", 2, 2, 12) == (1, 2)
    assert layout("auto", 4, 3, 12, shard_weights=True) == (1, 4)
    with pytest.raises(InputError, match="do not divide"):
        layout("sequence", 3, 3, 2)
    with pytest.raises(InputError, match="--parallel sequence"):
        layout("cfg", 2, 3, 12, shard_weights=True)
    with pytest.raises(InputError, match="parallel mode"):
        layout("ring", 2, 3, 12)


@pytest.fixture(scope="module")
def files(checkpoints: Path) -> list[str]:
    """`fulldit generate` options with a file for every condition."""
    d = checkpoints / "files"
    d.mkdir()
    req = every_condition()
    save_camera_re10k(req.camera, d / "cam.txt")
    write_image(d / "ref.png", req.references[0])
    write_image(d / "first.png", req.first_frame)
    np.savez(d / "depth.npz", depth=req.depth.numpy())
    return ["generate", "--checkpoint", str(checkpoints / "isolated"), "--prompt", req.prompt,
            "--camera", str(d / "cam.txt"), "--reference", str(d / "ref.png"), "--depth", str(d / "depth.npz"),
            "--first-frame", str(d / "first.png"), "--guidance", "2", "--text-guidance", "4", "--seed", "3",
            "--device", "cpu"]  # fmt: skip


@needs_gloo
@pytest.mark.parametrize("mode", ["cfg", "sequence"])
def test_torchrun_cli_writes_the_video_of_one_process(files: list[str], tmp_path: Path, mode: str) -> None:
    """torchrun, 2 processes: the mp4 of one process (mean pixel difference <= 1/255), written by rank 0 alone."""
    from fulldit.cli import main

    assert main([*files, "-o", str(tmp_path / "one" / "out.mp4")]) == 0
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "fulldit.cli", *files, "--parallel", mode, "-o", str(tmp_path / "two" / "out.mp4")]  # fmt: skip
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("wrote ") == 1  # rank 0 reports, and writes
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["out.mp4", "out.png"]
    one, two = read_video(tmp_path / "one" / "out.mp4"), read_video(tmp_path / "two" / "out.mp4")
    assert one.shape == two.shape == (F, 3, S, S)
    assert (one - two).abs().mean() <= 1 / 255


def test_parallel_options_need_torchrun(files: list[str], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from fulldit.cli import main

    assert main([*files, "--parallel", "sequence", "-o", str(tmp_path / "out.mp4")]) == 2
    assert "torchrun" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
