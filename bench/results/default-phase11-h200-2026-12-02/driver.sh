#!/bin/bash
# Session driver (2026-12-02, phase 11): two arms from phase 10's weights side by side on one H200, micro-batches of 32
# (the config's), 14 minutes each, world seeds 41,000,000+: 1 = flow.shift 24, 2 = the byte text encoder grown from 2 to
# 4 layers (`text.layers=4`: bench/ab_default.sh grows it with `fulldit convert --from deepen --text-layers 4`, the
# new layers the identity), shift 12 as shipped. Run from /tmp/repo (a copy of the tree) after the wheels were
# installed in /tmp/site; the default's shards arrived in /tmp/default over two later calls (config.json last).
# As run: both arms finished their 533-step cosine in 12 minutes (~58 clips/s each, 115 together), validation 27 s
# each; arm 2 won (psnr_all 17.54 vs 17.48). The x0 tables were cut short by the device time (arm 1 complete,
# x0-partial.jsonl). With the remaining minutes, a continuation of arm 2 alone (not shipped: no gain):
#   DEFAULT=/tmp/ab/arm-2/run/model CASES=32 SEED=45000000 VALIDATE=1000000 RATE=1.3 \
#     bash bench/continue_default.sh /tmp/p12 auto 4.5 text.layers=4
# (249 steps; its first start failed without `text.layers=4`: continue_default.sh trains configs/synth-s16.yaml,
# which had 2 text layers until this phase was shipped).
set -u
W=/tmp/ab; mkdir -p $W/back /tmp/bin
command -v python > /dev/null || ln -sf "$(command -v python3)" /tmp/bin/python
export PATH=/tmp/bin:$PATH PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
cd /tmp/repo
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 15 > $W/gpu-util.csv 2>&1 &
DEFAULT=/tmp/default SEED=41000000 CASES=32 bash bench/ab_default.sh $W 14 \
  "RATE=0.7 flow.shift=24" "RATE=0.7 text.layers=4" > $W/ab.out 2>&1
echo "ab rc=$?" >> $W/ab.out
