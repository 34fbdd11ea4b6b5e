"""Training loop: learning, exact resume, atomic checkpoints, signals, curriculum, and 2-process DDP (gloo)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fulldit.cli import main
from fulldit.errors import InputError
from fulldit.train import state as train_state
from fulldit.train.config import CurriculumConfig, Stage, TrainConfig, load_train_config
from fulldit.train.curriculum import allowed_subsets, check_curriculum, draw_subset, stage_at
from fulldit.train.loop import lr_at, train
from tests.conftest import bench_script, tiny_config

# tiny runs: 4 frames of 32x32 -> 2x4x4 = 32 video tokens; 16 depth tokens... all in fp32 on CPU
FAST = [
    "train.batch_size=4",
    "train.data.frames=4",
    "train.data.height=32",
    "train.data.width=32",
    "train.data.workers=0",
    "train.precision=fp32",
    "train.warmup=2",
    "train.log_every=1",
    "train.keep=10",
    "train.lr=1e-3",
    "train.ema=0.9",
    "sample.frames=4",
    "sample.height=32",
    "sample.width=32",
    "sample.steps=2",
    "model.layers=2",
    "train.curriculum.stages=[{start: 0, conditions: [camera]}, {start: 2, conditions: [camera, reference, depth]}]",
]
CONFIG = "configs/tiny.yaml"
REPO = Path(__file__).resolve().parents[1]


def _weights(run: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoints" / f"step_{step:08d}" / "weights.safetensors"))


def test_resume_is_exact(tmp_path: Path) -> None:
    """N steps straight == N/2 steps, then --resume for the rest: same losses, weights, moments, EMA."""
    with_sample = [*FAST, "train.steps=4", "train.save_every=2", "train.sample_every=4"]
    straight = train(CONFIG, str(tmp_path / "a"), with_sample, device="cpu")
    assert (tmp_path / "a" / "samples" / "step_00000004.mp4").is_file()  # a sample video from the EMA weights
    first = train(CONFIG, str(tmp_path / "b"), [*FAST, "train.steps=4", "train.save_every=2", "train.max_minutes=1e-9"],
                  device="cpu")  # fmt: skip
    assert first.step == 1  # max_minutes stops after the first step (and saves it)
    rest = [*FAST, "train.steps=4", "train.save_every=2"]
    second = train(CONFIG, str(tmp_path / "b"), rest, resume=True, device="cpu")
    assert second.step == 4 and set(second.losses) == {2, 3, 4}
    for step in (2, 3, 4):
        assert second.losses[step] == straight.losses[step]
    a, b = _weights(tmp_path / "a", 4), _weights(tmp_path / "b", 4)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    oa = load_file(str(tmp_path / "a/checkpoints/step_00000004/optimizer.safetensors"))
    ob = load_file(str(tmp_path / "b/checkpoints/step_00000004/optimizer.safetensors"))
    assert all(torch.equal(oa[k], ob[k]) for k in oa)
    ea = load_file(str(tmp_path / "a/checkpoints/step_00000004/ema/text_encoder.safetensors"))
    eb = load_file(str(tmp_path / "b/checkpoints/step_00000004/ema/text_encoder.safetensors"))
    assert all(torch.equal(ea[k], eb[k]) for k in ea)
    # the exported model is a checkpoint `fulldit generate` reads, in bf16
    assert main(["info", str(second.model)]) == 0
    assert next(iter(load_file(str(second.model / "text_encoder.safetensors")).values())).dtype == torch.bfloat16


def test_loss_decreases_on_a_fixed_batch(tmp_path: Path) -> None:
    """Same clips every step (a one-clip dataset folder): the loss must fall well below where it started."""
    from fulldit.world.synth import write_dataset

    write_dataset(tmp_path / "data", n=1, seed=3, frames=4, height=32, width=32, device="cpu")
    run = train(CONFIG, str(tmp_path / "run"),
                [*FAST, "train.steps=40", "train.save_every=40", "train.data.source=folder",
                 f"train.data.path={tmp_path / 'data'}", "flow.timestep_sampling=uniform", "train.lr=2e-3",
                 "train.curriculum.none=0.0", "frames.first=0", "frames.prefix=0", "frames.last=0"],
                device="cpu")  # fmt: skip
    early = sum(run.losses[s] for s in range(1, 6)) / 5
    late = sum(run.losses[s] for s in range(36, 41)) / 5
    assert late < 0.6 * early, (early, late)


def test_crash_while_saving_keeps_the_last_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    train(CONFIG, str(run), [*FAST, "train.steps=2", "train.save_every=1"], device="cpu")
    calls = {"n": 0}
    real = train_state.save_file

    def dying_save(tensors: dict, path: str, metadata: dict | None = None) -> None:
        calls["n"] += 1
        if "optimizer" in path:  # die half-way through writing step 3
            raise OSError("disk pulled out")
        real(tensors, path, metadata)

    monkeypatch.setattr(train_state, "save_file", dying_save)
    with pytest.raises(OSError, match="disk pulled out"):
        train(CONFIG, str(run), [*FAST, "train.steps=4", "train.save_every=1"], resume=True, device="cpu")
    assert calls["n"] >= 2
    latest = train_state.latest_checkpoint(run / "checkpoints")
    assert latest is not None and latest.name == "step_00000002"
    assert (run / "checkpoints" / ".step_00000003.partial").exists()  # the broken one is never "latest"
    monkeypatch.setattr(train_state, "save_file", real)
    done = train(CONFIG, str(run), [*FAST, "train.steps=4", "train.save_every=1"], resume=True, device="cpu")
    assert done.step == 4 and set(done.losses) == {3, 4}
    assert not (run / "checkpoints" / ".step_00000003.partial").exists()  # cleaned up by the next save


def test_keep_last_k_and_refuse_to_overwrite(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(CONFIG, str(run), [*FAST, "train.steps=4", "train.save_every=1", "train.keep=2"], device="cpu")
    assert sorted(p.name for p in (run / "checkpoints").glob("step_*")) == ["step_00000003", "step_00000004"]
    assert (run / "checkpoints" / "latest").read_text().strip() == "step_00000004"
    with pytest.raises(InputError, match="--resume"):
        train(CONFIG, str(run), [*FAST, "train.steps=4"], device="cpu")


def _run_cli(args: list[str], out: Path, **kw: object) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_sigterm_saves_and_exits_cleanly(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = _run_cli([sys.executable, "-m", "fulldit.cli", "train", "--config", CONFIG, "--out", str(run), "--device",
                     "cpu", *FAST, "train.steps=100000", "train.save_every=100000"], run)  # fmt: skip
    deadline = time.time() + 120
    while not list((run / "logs").glob("events*")) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr[-2000:]
    assert "stopped at step" in stdout
    latest = train_state.latest_checkpoint(run / "checkpoints")
    assert latest is not None
    step = json.loads((latest / "trainer.json").read_text())["step"]
    assert 0 < step < 100000
    assert (run / "model" / "config.json").is_file()


def _torchrun_available() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_gloo_available()


@pytest.mark.skipif(not _torchrun_available(), reason="torch.distributed with gloo is not available")
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_processes_equal_one_with_the_same_global_batch(tmp_path: Path, parallel: str) -> None:
    """torchrun, 2 CPU processes (gloo), 1 micro-batch each == 1 process accumulating 2 micro-batches."""
    common = [*FAST, "train.steps=3", "train.save_every=3", f"train.parallel={parallel}"]
    one = train(CONFIG, str(tmp_path / "one"), [*common, "train.micro_batch=2"], device="cpu")
    proc = _run_cli([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                     "-m", "fulldit.cli", "train", "--config", CONFIG, "--out", str(tmp_path / "two"), "--device",
                     "cpu", *common], tmp_path)  # fmt: skip
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    a, b = _weights(tmp_path / "one", 3), _weights(tmp_path / "two", 3)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=2e-5, rtol=1e-4, msg=k)
    assert one.step == 3


def test_lr_schedule() -> None:
    cfg = TrainConfig(steps=100, warmup=10, lr=1.0, min_lr=0.1)
    assert lr_at(cfg, 0) == pytest.approx(0.1)
    assert lr_at(cfg, 9) == pytest.approx(1.0)
    assert lr_at(cfg, 55) == pytest.approx(0.55)
    assert lr_at(cfg, 100) == pytest.approx(0.1)
    assert all(lr_at(cfg, s) >= lr_at(cfg, s + 1) for s in range(10, 100))


def test_curriculum_stages_and_held_out_subsets() -> None:
    cfg = CurriculumConfig(
        stages=(Stage(0, ("camera",)), Stage(10, ("camera", "reference", "depth"))),
        exclude=(("camera", "reference", "depth"),),
        none=0.2,
    )
    assert stage_at(cfg, 9).conditions == ("camera",)
    subsets = allowed_subsets(cfg, stage_at(cfg, 10).conditions)
    assert ("camera", "reference", "depth") not in subsets and len(subsets) == 6
    g = torch.Generator().manual_seed(0)
    early = {draw_subset(cfg, 5, g) for _ in range(200)}
    assert early == {(), ("camera",)}
    late = [draw_subset(cfg, 50, g) for _ in range(3000)]
    assert set(late) == {(), *subsets}
    assert 0.15 < late.count(()) / len(late) < 0.25
    with pytest.raises(InputError, match="does not have"):
        check_curriculum(CurriculumConfig(stages=(Stage(0, ("sound",)),)), ("camera",))
    with pytest.raises(InputError, match="no subset"):
        check_curriculum(CurriculumConfig(stages=(Stage(0, ("camera",)),), exclude=(("camera",),)), ("camera",))


def test_train_config_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model_cfg, tcfg = load_train_config("configs/synth-s.yaml")
    assert tcfg.curriculum.exclude == (("camera", "reference", "depth"),) and model_cfg.model.dim == 384
    with pytest.raises(InputError, match="train.batch_size=6 is not divisible by 4 ranks"):
        TrainConfig(batch_size=6).accumulation(4)
    assert TrainConfig(batch_size=8, micro_batch=2).accumulation(2) == (2, 2)
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  stepz: 3\n")
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "unknown key(s) stepz" in err and err.count("\n") == 1
    assert main(["train", "--config", CONFIG, "--out", str(tmp_path / "o"), "train.parallel=horovod"]) == 2
    assert main(["train", "--config", CONFIG, "--out", str(tmp_path / "o"), "train.activation_checkpointing=some"]) == 2
    assert "train.activation_checkpointing must be" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert TrainConfig(activation_checkpointing="selective").activation_checkpointing == "selective"


def test_batch_reuse_renders_once_per_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """train.data.reuse=2: one rendered batch per two steps; a resume in the middle of a pair is still exact."""
    from fulldit.train import loop

    rendered = []
    real = loop.to_batch

    def counting(items: list, cfg: object, device: object) -> object:
        rendered.append([p.seed for p in items])
        return real(items, cfg, device)

    monkeypatch.setattr(loop, "to_batch", counting)
    reuse = [*FAST, "train.steps=4", "train.save_every=1", "train.data.reuse=2"]
    straight = train(CONFIG, str(tmp_path / "a"), reuse, device="cpu")
    assert rendered == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert straight.losses[1] != straight.losses[2]  # same clips, fresh noise and timesteps
    rendered.clear()
    train(CONFIG, str(tmp_path / "b"), [*reuse, "train.max_minutes=1e-9"], device="cpu")  # stops after step 1
    assert rendered[0] == [0, 1, 2, 3]  # (the next group may have been prefetched before the stop)
    rendered.clear()
    resumed = train(CONFIG, str(tmp_path / "b"), reuse, resume=True, device="cpu")
    assert rendered == [[0, 1, 2, 3], [4, 5, 6, 7]]  # the resumed pair's batch is rendered again
    assert all(resumed.losses[s] == straight.losses[s] for s in (2, 3, 4))


def test_activation_checkpointing_gives_the_same_gradients() -> None:
    from fulldit.config import load_config
    from fulldit.model import FullDiT
    from tests.conftest import randomize

    cfg = load_config(CONFIG, ["model.layers=2"]).model
    torch.manual_seed(0)
    model = FullDiT(cfg)
    randomize(model)
    x = torch.randn(2, cfg.in_channels, 2, 4, 4)
    ctx = torch.randn(2, 5, cfg.text_dim)
    grads = []
    for on in (False, True):
        model.zero_grad()
        model.gradient_checkpointing = on
        model(x, torch.tensor([0.3, 0.8]), ctx).square().mean().backward()
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    assert len(grads[0]) == len(grads[1]) > 0
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_validation_scores_unseen_worlds(tmp_path: Path) -> None:
    """train.validate_every: the EMA weights generate unseen validation worlds, scored in dB and identity gain."""
    from fulldit.train.validate import VALIDATION_SEED_BASE, validation_clips

    run = tmp_path / "v"
    train(CONFIG, str(run), [*FAST, "train.steps=3", "train.validate_every=2", "train.validate_clips=1"], device="cpu")
    rows = [json.loads(line) for line in (run / "validation.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 3]  # every 2 steps and at the end
    for r in rows:
        assert set(r) == {"step", "psnr_all", "psnr_text", "identity_gain", "x0_psnr_all_t1", "attr_text", "room_cond",
                          "seconds"}  # fmt: skip
        assert 0 < r["seconds"] < 600  # how long the training waited for it
        assert all(0 < r[k] < 100 for k in ("psnr_all", "psnr_text", "x0_psnr_all_t1"))
        assert -1 <= r["identity_gain"] <= 1  # a difference of two palette fractions (tiny reads references)
        assert 0 <= r["attr_text"] <= 10  # a ratio of accuracies; the truth's is above 0 on this world
    clip = validation_clips(1, 4, 32, 32)[0]
    assert clip.meta["seed"] == VALIDATION_SEED_BASE and VALIDATION_SEED_BASE > 10**9  # far above training indices
    # bench/scalars_csv.py: the run's tensorboard scalars as the small CSV that travels back from a GPU machine
    import csv

    module = bench_script("scalars_csv")
    assert module.main([str(run), "--name", "v", "--out", str(tmp_path / "s.csv")]) == 0
    table = list(csv.DictReader((tmp_path / "s.csv").open()))
    steps = {tag: [int(r["step"]) for r in table if r["tag"] == tag] for tag in {r["tag"] for r in table}}
    assert steps["loss/all"] == [1, 2, 3] and steps["validation/identity_gain"] == [2, 3]
    valid = {int(r["step"]): float(r["value"]) for r in table if r["tag"] == "validation/psnr_all"}
    assert valid == pytest.approx({r["step"]: r["psnr_all"] for r in rows}, rel=1e-6)  # the numbers of the JSON
    assert {r["run"] for r in table} == {"v"}
    with pytest.raises(InputError, match="no tensorboard event files"):
        module.scalar_rows(tmp_path / "empty", "x")


def test_validation_text_adherence_is_the_classifier_on_the_caption_only_clips(monkeypatch: pytest.MonkeyPatch) -> None:
    """attr_text: the attribute classifier's accuracy on the caption-only clips over its accuracy on the truth: exactly
    1 when those clips are the truth, below 1 for clips that show nothing (grey); the other tasks are untouched.
    room_cond: its walls and floor accuracy on the clips with every condition but the first frame, exactly 1 when
    those are the truth, and read from those clips alone."""
    from fulldit.generate import Pipeline
    from fulldit.train.validate import validate, validation_clips

    clips = validation_clips(2, 4, 16, 16)  # the tiny model's size; the classifier reads any size (resized)
    pipe = Pipeline.from_config(tiny_config())
    truth = {c.caption: c.video for c in clips}

    def fake(shown: str):
        def generate(self, req=None, **kw):
            prompt = kw["prompt"] if req is None else req.prompt
            caption_only = req is None and set(kw) == {"prompt", "frames", "seed"}  # no condition, no first frame
            conditions_only = req is not None and req.first_frame is None and req.depth is not None
            wanted = {"truth": caption_only, "room": conditions_only}[shown]
            return truth[prompt] if wanted else torch.full_like(truth[prompt], 0.5)

        return generate

    scores = {}
    for shown in ("truth", "room"):
        monkeypatch.setattr(Pipeline, "generate", fake(shown))
        scores[shown] = validate(pipe, clips)
    scores["grey"] = scores.pop("room")  # its caption-only clips are grey
    assert scores["grey"]["room_cond"] == 1.0  # the conditions-only clips were the truth
    assert scores["truth"]["room_cond"] < 0.5  # grey conditions-only clips: read from those clips alone
    assert scores["truth"]["attr_text"] == 1.0
    assert scores["grey"]["attr_text"] < 0.9
    assert scores["truth"]["psnr_all"] == scores["grey"]["psnr_all"]  # the every-condition clip is grey in both


def test_x0_error_diagnostic_reads_the_network_and_keeps_the_given_frame() -> None:
    """x0_estimate (validation's, bench/x0_error.py's): a velocity model's x_t - t v tends to the truth as t -> 0
    whatever the network says; at t = 1 it is the network's own guess; with the first frame given, frame 0 is the
    truth exactly."""
    from fulldit.generate import Pipeline
    from fulldit.train.validate import validation_clips, x0_estimate
    from tests.conftest import randomize, tiny_config

    assert bench_script("x0_error").x0_estimate is x0_estimate  # the script imports; its estimate is validation's
    pipe = Pipeline.from_config(tiny_config())
    randomize(pipe.model, std=0.05)
    clip = validation_clips(1, 4, 16, 16)[0]
    near = x0_estimate(pipe, clip, 1e-4, "text")
    far = x0_estimate(pipe, clip, 1.0, "text")
    assert near.shape == far.shape == clip.video.shape
    assert (near - clip.video).abs().max() < 1e-2 < (far - clip.video).abs().max()
    given = x0_estimate(pipe, clip, 1.0, "all")
    torch.testing.assert_close(given[0], clip.video[0], atol=1e-5, rtol=0)
    assert (given[1:] - clip.video[1:]).abs().max() > 1e-2


def test_compiled_training_never_recompiles_after_warm_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """train.compile: every mix of conditions, masks and frame conditions reuses the graphs built in warm-up.

    Dynamo's guards do not depend on the backend, so aot_eager (fast to build on a CPU) stands in for inductor.
    """
    from fulldit.model import FullDiT

    compile_blocks = FullDiT.compile_blocks
    monkeypatch.setattr(FullDiT, "compile_blocks", lambda self, **kw: compile_blocks(self, backend="aot_eager", **kw))
    every = ["train.compile=true", "train.curriculum.stages=[{start: 0, conditions: [camera, reference, depth]}]"]
    train(CONFIG, str(tmp_path / "r"), [*FAST, *every, "train.steps=12", "train.save_every=12"], device="cpu")
    torch.compiler.set_stance("fail_on_recompile")
    try:
        rest = train(CONFIG, str(tmp_path / "r"), [*FAST, *every, "train.steps=30"], resume=True, device="cpu")
    finally:
        torch.compiler.set_stance("default")
    assert rest.step == 30


def test_prefetcher_keeps_order_and_reports_errors() -> None:
    """Items come in production order, made in a background thread; an error surfaces where the item is taken."""
    import threading

    from fulldit.train.data import Prefetcher

    made: list[tuple[int, str]] = []

    def produce() -> int:
        made.append((len(made), threading.current_thread().name))
        if len(made) == 4:
            raise ValueError("clip 3 is broken")
        return len(made) - 1

    data = Prefetcher(produce, torch.device("cpu"))
    assert [data.get() for _ in range(3)] == [0, 1, 2]
    assert all(name.startswith("fulldit-data") for _, name in made)
    with pytest.raises(ValueError, match="clip 3 is broken"):
        data.get()
    data.close()


def test_new_modules_learn_at_their_own_rate_and_resume_exactly(tmp_path: Path) -> None:
    """train.new_module_lr_scale: condition modules (and gates) in their own AdamW group at scale x lr, every step;
    resuming is exact; resuming with another grouping is a clear error."""
    scaled = [*FAST, "train.steps=4", "train.save_every=2", "train.new_module_lr_scale=10"]
    straight = train(CONFIG, str(tmp_path / "a"), scaled, device="cpu")
    info = json.loads((tmp_path / "a" / "checkpoints" / "step_00000004" / "trainer.json").read_text())
    backbone, new = info["param_groups"]
    assert new["lr"] == pytest.approx(10 * backbone["lr"]) and backbone["lr"] > 0
    names = set(_weights(tmp_path / "a", 4))
    assert any(n.startswith("model.conditions.") for n in names)
    train(CONFIG, str(tmp_path / "b"), [*scaled, "train.max_minutes=1e-9"], device="cpu")  # stops after step 1
    resumed = train(CONFIG, str(tmp_path / "b"), scaled, resume=True, device="cpu")
    assert all(resumed.losses[s] == straight.losses[s] for s in (2, 3, 4))
    for k, v in _weights(tmp_path / "a", 4).items():
        assert torch.equal(v, _weights(tmp_path / "b", 4)[k]), k
    with pytest.raises(InputError, match="new_module_lr_scale"):
        train(CONFIG, str(tmp_path / "b"), [*FAST, "train.steps=6"], resume=True, device="cpu")


def test_a_failed_step_gives_the_signals_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception in a step leaves the loop with the caller's SIGINT/SIGTERM handlers restored (the loop's own
    only ask it to stop at the end of a step: a notebook's Ctrl-C would be swallowed after a crash)."""
    from fulldit.train import loop

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def broken(*args, **kwargs):
        raise RuntimeError("a broken step")

    monkeypatch.setattr(loop, "micro_step", broken)
    with pytest.raises(RuntimeError, match="a broken step"):
        train(CONFIG, str(tmp_path / "run"), [*FAST, "train.steps=2"], device="cpu")
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_frame_psnr_compares_each_frame_with_the_copied_first_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """bench/frame_psnr.py: per world and on average, each generated frame after the given one against the truth, next
    to frame 0 copied; a model that returns its first frame in every frame scores exactly the copy."""
    from fulldit.generate import Pipeline

    Pipeline.from_config(tiny_config()).save_pretrained(tmp_path / "ckpt")
    monkeypatch.setattr(Pipeline, "generate", lambda self, req: req.first_frame[None].expand(4, -1, -1, -1))
    bench_script("frame_psnr").main(["--checkpoint", str(tmp_path / "ckpt"), "--clips", "2", "--device", "cpu"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 3 and rows[-1]["clips"] == 2 and rows[-1]["frame1_below_copy"] == 0
    for r in rows:
        assert r["generated"] == r["frame0_copied"] and len(r["generated"]) == 3  # frames 1-3 of the tiny 4
