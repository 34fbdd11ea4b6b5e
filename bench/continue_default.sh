#!/usr/bin/env bash
# Continue training the shipped default on one GPU (issue #14 item 2), as run for the model card:
#   1. wait for DEFAULT (on the GPU machine its shards may arrive with later calls);
#   2. `fulldit train --init DEFAULT` with its own config's training section (configs/synth-s16.yaml: fresh AdamW,
#      short warm-up, cosine over STEPS), new world seeds, validation on unseen worlds every VALIDATE steps
#      (the curve that decides, since the loss is dominated by high-noise timesteps), stopped by MINUTES;
#   3. FullBench-Synth videos of the result: the first CASES cases of camera, depth, identity and their triple,
#      generated here (`--generate-only`); score them where pycolmap is installed (the GPU machine lacks it):
#      `fulldit eval --videos REPORT/videos --bench BENCH --out REPORT --cases CASES --combos ...` (no checkpoint).
#   bash bench/continue_default.sh WORK STEPS|auto MINUTES [train overrides...]
# STEPS=auto sizes the cosine schedule to end with MINUTES: RATE steps/s (synth-s16 at batch 64 on one H200: 1.4,
# phase 6's median; phase 8 ran at 1.2 beside the CPU render of the benchmark), ~1.3 minutes of compilation, ~22 s
# per validation of 16 worlds (three tasks since phase 8). Phases 5 and 6 sized it from an earlier, slower rate and
# ended minutes early; phases 7 and 8 from a faster one and stopped at their limit before the cosine's end.
# DEFAULT, CONFIG, DEVICE, VALIDATE, CASES (0: no FullBench), COMBOS (FullBench combinations), SEED (first world seed
# of the new data: phases 6-8 used 13,000,000+, 17,000,000+, 21,000,000+; give each phase its own), RATE, NAME (the run
# column of WORK/scalars.csv, every tensorboard scalar of the run: bench/scalars_csv.py).
set -euo pipefail
W=${1:?work folder}; STEPS=${2:?steps of the cosine schedule}; MINUTES=${3:?wall-time limit}; shift 3
DEFAULT=${DEFAULT:-checkpoints/default}; CONFIG=${CONFIG:-configs/synth-s16.yaml}; DEVICE=${DEVICE:-cuda}
VALIDATE=${VALIDATE:-400}; CASES=${CASES:-16}; SEED=${SEED:-33000000}; RATE=${RATE:-1.4}
if [ "$STEPS" = auto ]; then
  STEPS=$(python -c "print(max(1, int(($MINUTES - 1.3) * 60 / (1 / $RATE + 22 / $VALIDATE))))")
fi
COMBOS=${COMBOS:-"camera depth identity camera+identity+depth"}
mkdir -p "$W"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # bench/*.py import fulldit
note() { echo "$(date +%T) $*" | tee -a "$W/plan.txt"; }

if [ "$CASES" -gt 0 ] && [ ! -f "$W/fullbench/bench.json" ]; then  # rendered on the CPU while training runs,
  # niced and on 4 threads: at full priority it took every core and starved the training's compilation (phase 7)
  OMP_NUM_THREADS=4 nice -n 19 python -m fulldit.cli synth --bench --out "$W/fullbench" --cases "$CASES" --combos $COMBOS --device cpu \
    > "$W/synth.log" 2>&1 &
fi
while [ ! -f "$DEFAULT/config.json" ]; do sleep 5; done
note "training $STEPS steps or $MINUTES minutes from $DEFAULT"
python -m fulldit.cli train --config "$CONFIG" --out "$W/run" --device "$DEVICE" --init "$DEFAULT" \
  train.steps="$STEPS" train.max_minutes="$MINUTES" train.validate_every="$VALIDATE" train.validate_clips=16 \
  train.data.seed="$SEED" train.sample_every=0 train.log_every=25 "$@" > "$W/train.log" 2>&1
note "trained: $(tail -n 1 "$W/run/validation.jsonl")"
python bench/scalars_csv.py "$W/run" --name "${NAME:-run}" --out "$W/scalars.csv"  # small: travels back with the weights
wait
if [ "$CASES" -gt 0 ]; then
  python -m fulldit.cli eval --checkpoint "$W/run/model" --bench "$W/fullbench" --out "$W/report" --cases "$CASES" \
    --combos $COMBOS --device "$DEVICE" --generate-only > "$W/eval.log" 2>&1
  note "FullBench videos in $W/report/videos"
fi
note done
