"""Training: `fulldit train --config configs/NAME.yaml [key=value ...]` on CPU, one GPU, or torchrun (DDP/FSDP2).

- config.py      the `train:` section of a YAML file (frozen dataclasses, like the model's config)
- curriculum.py  which conditions a micro-batch trains: staged, every allowed subset, held-out subsets
- data.py        deterministic, index-addressed batches from the synthetic world or a dataset folder
- ema.py         exponential moving average of the weights (what gets shipped)
- state.py       training checkpoints: atomic, keep-K, exact resume; the export of OUT/model
- validate.py    what the EMA weights generate during training: PSNR on unseen worlds, sample videos
- loop.py        the loop itself (nanoGPT-shaped: setup, step, log, save)
"""
