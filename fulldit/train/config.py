"""The `train:` section of a training YAML. The rest of the file is the checkpoint's `FullDiTConfig`.

A training YAML is a model YAML with one more top-level key, so `configs/synth-s.yaml` describes both the
model that is shipped and how it was trained. Unknown keys are errors, as everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fulldit.config import SEED_LIMIT, FullDiTConfig, from_dict, naming, read_yaml
from fulldit.errors import InputError, check


@dataclass(frozen=True)
class DataConfig:
    """Where clips come from. `synthetic`: the world of fulldit.data, rendered on the training device."""

    source: str = "synthetic"  # "synthetic" | "folder"
    path: str = ""  # a fulldit-dataset/1 folder when source = "folder"
    seed: int = 0  # synthetic: clip i is the world of seed + i; folder: the epoch shuffle's seed
    frames: int = 16
    height: int = 128
    width: int = 128
    references_per_object: int = 2
    workers: int = 4  # DataLoader workers (plan synthetic clips, or decode folder clips)
    reuse: int = 1  # each batch trains this many consecutive steps (fresh noise, times): for render-bound runs

    def __post_init__(self) -> None:
        if self.source not in ("synthetic", "folder"):
            raise InputError(f"train.data.source must be 'synthetic' or 'folder', not {self.source!r}")
        if self.reuse < 1:
            raise InputError(f"train.data.reuse must be at least 1, not {self.reuse}")
        check(0 <= self.seed < SEED_LIMIT, "train.data.seed", self.seed, "must be in [0, 2**63)")
        check(self.frames >= 1, "train.data.frames", self.frames, "must be at least 1")
        low, high = (8, 4096) if self.source == "synthetic" else (1, None)  # the synthetic world renders 8..4096
        for name in ("height", "width"):
            value = getattr(self, name)
            rule = f"must be in [{low}, {high}]" if high else "must be at least 1"
            check(low <= value <= (high or value), f"train.data.{name}", value, rule)
        check(0 <= self.references_per_object <= 8, "train.data.references_per_object", self.references_per_object,
              "must be in [0, 8]")  # fmt: skip
        check(self.workers >= 0, "train.data.workers", self.workers, "must be at least 0")
        if self.source == "folder" and not self.path:
            raise InputError("train.data.path: a dataset folder is needed when train.data.source = 'folder'")


@dataclass(frozen=True)
class Stage:
    """From step `start` on, these token conditions are trained (frame conditions always are)."""

    start: int = 0
    conditions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check(self.start >= 0, "train.curriculum.stages[].start", self.start, "must be at least 0")


@dataclass(frozen=True)
class CurriculumConfig:
    """FullDiT's training strategy: conditions enter in stages; each micro-batch trains one subset of them.

    Every subset of the stage's conditions is drawn with equal probability, except those that contain a set
    listed in `exclude` (held out: FullDiT's emergent-ability test) or have more than `max_conditions`
    members. `none` is the probability of a micro-batch with no token condition (guidance needs it).
    """

    stages: tuple[Stage, ...] = (Stage(0, ("camera", "reference", "depth")),)
    exclude: tuple[tuple[str, ...], ...] = ()
    max_conditions: int = 0  # 0: no limit
    none: float = 0.1

    def __post_init__(self) -> None:
        if not self.stages or self.stages[0].start != 0:
            raise InputError("train.curriculum.stages: the first stage must start at step 0")
        starts = [s.start for s in self.stages]
        if starts != sorted(set(starts)):
            raise InputError(f"train.curriculum.stages: starts must increase, found {starts}")
        if not 0 <= self.none < 1:
            raise InputError(f"train.curriculum.none must be in [0, 1), not {self.none}")
        check(self.max_conditions >= 0, "train.curriculum.max_conditions", self.max_conditions, "must be at least 0")


LORA_TARGETS = (
    "self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o",
    "cross_attn.q", "cross_attn.k", "cross_attn.v", "cross_attn.o",
    "ffn.0", "ffn.2",
)  # fmt: skip


@dataclass(frozen=True)
class LoraConfig:
    """Optional LoRA on the backbone (peft): adapters on each block's linears, everything else of the backbone frozen.

    `targets` name linears inside a block (`blocks.<i>.<target>`). `trainable` names what is trained in full besides
    the adapters, as a dotted part of a parameter name (`conditions` matches `conditions.depth.embed.weight`,
    `cond_gate` every `blocks.<i>.cond_gate`): FullDiT's own modules, which a Wan2.1 backbone lacks. A trainable
    text encoder is frozen with the backbone. Off by default: full fine-tuning.
    """

    enabled: bool = False
    rank: int = 32
    alpha: float = 32.0  # the update is (alpha / rank) * B A
    dropout: float = 0.0
    targets: tuple[str, ...] = LORA_TARGETS
    trainable: tuple[str, ...] = ("conditions", "cond_gate")

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise InputError(f"train.lora.rank must be at least 1, not {self.rank}")
        if not self.alpha > 0:
            raise InputError(f"train.lora.alpha must be positive, not {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise InputError(f"train.lora.dropout must be in [0, 1), not {self.dropout}")
        if not self.targets:
            raise InputError("train.lora.targets: name at least one linear of a block, e.g. self_attn.q")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, parallelism, checkpointing and logging. `batch_size` is global (all ranks, all micro-batches)."""

    steps: int = 1000
    batch_size: int = 32
    micro_batch: int = 0  # samples per rank per forward; 0: batch_size / world size (no accumulation)
    lr: float = 3e-4
    min_lr: float = 3e-5  # cosine decays to this
    # FullDiT's own modules on a pretrained backbone (dotted name parts, as train.lora.trainable) learn at
    # new_module_lr_scale x the learning rate at every step: a zero-initialised gate moves ~lr per Adam step, so at a
    # backbone's fine-tuning rate (1e-5) it would stay nearly closed for thousands of steps
    new_modules: tuple[str, ...] = ("conditions", "cond_gate")
    new_module_lr_scale: float = 1.0
    warmup: int = 200
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema: float = 0.999
    precision: str = "bf16"  # "bf16" autocast on CUDA | "fp32"
    # recompute activations in backward: false / true (= "full": whole blocks) / "selective" (all but attention,
    # whose outputs are kept: most of the FLOPs of long sequences, little of the memory)
    activation_checkpointing: bool | str = False
    compile: bool = False  # torch.compile each block (fuses the elementwise work; compiles once, ~1 min)
    parallel: str = "ddp"  # under torchrun: "ddp" | "fsdp" (FSDP2, fully_shard per block)
    seed: int = 0
    log_every: int = 20
    sample_every: int = 0  # 0: no sample videos
    validate_every: int = 0  # generate and score validation worlds (train/validate.py) every N steps and at the end
    validate_clips: int = 16
    save_every: int = 500
    keep: int = 3  # training checkpoints kept
    max_minutes: float = 0.0  # stop (and save) after this much wall time; 0: no limit
    data: DataConfig = field(default_factory=DataConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)

    def __post_init__(self) -> None:
        if self.precision not in ("bf16", "fp32"):
            raise InputError(f"train.precision must be 'bf16' or 'fp32', not {self.precision!r}")
        if self.activation_checkpointing not in (True, False, "none", "full", "selective"):
            raise InputError(
                "train.activation_checkpointing must be true, false, 'full' or 'selective', "
                f"not {self.activation_checkpointing!r}"
            )
        if self.parallel not in ("ddp", "fsdp"):
            raise InputError(f"train.parallel must be 'ddp' or 'fsdp', not {self.parallel!r}")
        if not self.new_module_lr_scale > 0:
            raise InputError(f"train.new_module_lr_scale must be positive, not {self.new_module_lr_scale}")
        if self.validate_every < 0:
            raise InputError(f"train.validate_every must be 0 (off) or positive, not {self.validate_every}")
        for name in ("steps", "batch_size", "save_every", "keep", "log_every", "validate_clips"):
            if getattr(self, name) < 1:
                raise InputError(f"train.{name} must be at least 1, not {getattr(self, name)}")
        for name in ("micro_batch", "warmup", "sample_every"):
            check(getattr(self, name) >= 0, f"train.{name}", getattr(self, name), "must be at least 0")
        check(self.lr > 0, "train.lr", self.lr, "must be positive")
        check(0 <= self.min_lr <= self.lr, "train.min_lr", self.min_lr, f"must be in [0, train.lr={self.lr:g}]")
        check(all(0 <= b < 1 for b in self.betas), "train.betas", list(self.betas), "must be two numbers in [0, 1)")
        check(self.weight_decay >= 0, "train.weight_decay", self.weight_decay, "must be at least 0")
        check(self.grad_clip > 0, "train.grad_clip", self.grad_clip, "must be positive")
        check(0 <= self.ema < 1, "train.ema", self.ema, "must be in [0, 1)")
        check(0 <= self.seed < SEED_LIMIT, "train.seed", self.seed, "must be in [0, 2**63)")
        check(self.max_minutes >= 0, "train.max_minutes", self.max_minutes, "must be at least 0 (0: no limit)")

    def accumulation(self, world: int) -> tuple[int, int]:
        """(micro-batch size, micro-batches per step) on each of `world` ranks."""
        per_rank, rest = divmod(self.batch_size, world)
        if rest:
            raise InputError(f"train.batch_size={self.batch_size} is not divisible by {world} ranks")
        micro = self.micro_batch or per_rank
        if per_rank % micro:
            raise InputError(f"train.micro_batch={micro} does not divide the {per_rank} samples per rank")
        return micro, per_rank // micro


def load_train_config(path: str | Path, overrides: list[str] | None = None) -> tuple[FullDiTConfig, TrainConfig]:
    """Split a training YAML into the model's config and the `train:` section (overrides: `train.lr=1e-4`)."""
    data = read_yaml(path, overrides)
    with naming(str(path)):
        train = from_dict(TrainConfig, data.pop("train", {}), f"{path}:train")
        return from_dict(FullDiTConfig, data, str(path)), train
