#!/bin/bash
# Session driver (twelfth session, 2026-12-02, phase 12): three arms from phase 11's weights side by side on one H200,
# every arm reading whole captions (text.max_length=256: bench/ab_default.sh grows the byte encoder's position table,
# `fulldit convert --from deepen --text-max-length 256`), micro-batches of 16, 14 minutes each, world seeds
# 49,000,000+: 1 = that alone, 2 = + text-only steps 10% -> 30% (train.curriculum.none=0.3), 3 = + lr 4e-4.
# Phase 11's own validation at the shipped sampler (shift 12) ran first, beside the arms (baseline.jsonl).
# Run from /tmp/repo (a copy of the tree) after the wheels were installed in /tmp/site; the default's shards arrived
# in /tmp/default over two later calls (config.json last).
# As run: the three 396-step cosines ended in 12.8-13.4 minutes (~36-40 clips/s each, 112 together); validation 27-52 s
# each; arm 2 won by the rule (last psnr_all, 16 worlds: 17.94 vs 17.82 / 17.93; phase 11 17.88). Afterwards, by hand:
# FullBench videos of phase 11 and of arm 1 on the same 32 cases (`fulldit eval --checkpoint C --bench
# /tmp/ab/fullbench --out R --cases 32 --combos camera depth identity camera+identity+depth --generate-only`), and
# validation of phase 11 and every arm on 64 further unseen worlds (validation-64-worlds-from-3000.jsonl):
#   python bench/sample_sweep.py --checkpoint C --clips 64 --first-world 3000
set -u
W=/tmp/ab; mkdir -p $W/back /tmp/bin
command -v python > /dev/null || ln -sf "$(command -v python3)" /tmp/bin/python
export PATH=/tmp/bin:$PATH PYTHONPATH=/tmp/repo:/tmp/site PYTHONUNBUFFERED=1 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
cd /tmp/repo
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 15 > $W/gpu-util.csv 2>&1 &
(while [ ! -f /tmp/default/config.json ]; do sleep 3; done
 OMP_NUM_THREADS=2 python bench/sample_sweep.py --checkpoint /tmp/default --clips 16 > $W/back/baseline.jsonl 2> $W/baseline.err) &
C="train.micro_batch=16 train.data.workers=8 text.max_length=256"
DEFAULT=/tmp/default SEED=49000000 CASES=32 bash bench/ab_default.sh $W 14 \
  "$C RATE=0.52" "$C RATE=0.52 train.curriculum.none=0.3" "$C RATE=0.52 train.lr=4e-4" > $W/ab.out 2>&1
echo "ab rc=$?" >> $W/ab.out
