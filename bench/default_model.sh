#!/usr/bin/env bash
# The default model's recipe on one GPU (issue #14), as run for checkpoints/default:
#   1. bench/train_loop.py: the real loop vs its data-free twin, per candidate size, compiled and eager (item 0);
#   2. candidates trained for the same wall time each (same recipe: configs/synth-m.yaml's train section),
#      scored on the validation worlds (fulldit/train/validate.py; never FullBench);
#   3. the winner continues (--resume: weights, moments, EMA, step) for MORE minutes;
#   4. FullBench-Synth videos (fulldit eval --generate-only, scored later on any machine) and bench/bars.py.
# Each candidate's cosine schedule is sized (from step 1's throughput) to end when EACH + MORE minutes are up.
#   bash bench/default_model.sh WORK [EACH_MINUTES] [MORE_MINUTES]
# EXTRA (overrides for every run), BENCH (fulldit synth --bench options), CASES, LOOP_STEPS, DEVICE: smoke runs.
set -euo pipefail
W=${1:?work folder}; EACH=${2:-4}; MORE=${3:-10}
EXTRA=${EXTRA:-}; BENCH=${BENCH:-}; CASES=${CASES:-32}; LOOP_STEPS=${LOOP_STEPS:-24}; DEVICE=${DEVICE:-cuda}
mkdir -p "$W"
export PYTHONUNBUFFERED=1
SMALL="model.dim=384 model.layers=8 model.heads=3 model.ffn_dim=1536"   # synth-s's architecture
loop() { python bench/train_loop.py --configs configs/synth-m.yaml --device "$DEVICE" --steps "$LOOP_STEPS" \
           --warmup $((LOOP_STEPS / 2)) "$@"; }
loop $EXTRA > "$W/loop-m.log" 2>&1 || echo "compiled loop failed" >> "$W/plan.txt"
loop --no-memory $EXTRA train.compile=false > "$W/loop-m-eager.log" 2>&1
loop --no-memory $EXTRA $SMALL > "$W/loop-s.log" 2>&1 || loop --no-memory $EXTRA $SMALL train.compile=false > "$W/loop-s.log" 2>&1
rate() { python -c "import json,sys; print(([json.loads(l) for l in open(sys.argv[1]) if l.startswith('{\"config')] or [{'samples_per_s': 0}])[0]['samples_per_s'])" "$1"; }
COMPILE=$(python -c "print(str($(rate "$W/loop-m.log") >= $(rate "$W/loop-m-eager.log")).lower())")
BATCH=$(python -c "from fulldit.train.config import load_train_config as l; print(l('configs/synth-m.yaml', '$EXTRA'.split())[1].batch_size)")
steps_for() { python -c "print(max(2, int($(rate "$1") / $BATCH * 60 * ($EACH + $MORE) * 0.97)))"; }
S_STEPS=$(steps_for "$W/loop-s.log"); M_STEPS=$(steps_for "$W/loop-m.log")
echo "compile $COMPILE; planned steps: s $S_STEPS, m $M_STEPS" | tee "$W/plan.txt"
train() {  # name, steps, extra overrides...
  local name=$1 steps=$2; shift 2
  fulldit train --config configs/synth-m.yaml --out "$W/$name" --device "$DEVICE" "$@" $EXTRA train.compile="$COMPILE" \
    train.steps="$steps" train.validate_every=1000000 train.validate_clips=16 >> "$W/$name.log" 2>&1
}
train s "$S_STEPS" $SMALL train.max_minutes="$EACH"
train m "$M_STEPS" train.max_minutes="$EACH"
best=$(python - "$W" <<'PY'
import json, sys
rows = {n: json.loads(open(f"{sys.argv[1]}/{n}/validation.jsonl").read().splitlines()[-1]) for n in ("s", "m")}
print(max(rows, key=lambda n: rows[n]["psnr_all"] + rows[n]["psnr_text"]))
PY
)
echo "winner: $best" | tee -a "$W/plan.txt"
if [ "$best" = s ]; then train s "$S_STEPS" --resume $SMALL train.max_minutes="$MORE"
else train m "$M_STEPS" --resume train.max_minutes="$MORE"; fi
ln -sfn "$best" "$W/winner"
echo trained | tee -a "$W/plan.txt"
fulldit synth --bench --out "$W/fbs" --device "$DEVICE" $BENCH > "$W/synth.log" 2>&1
python bench/bars.py --checkpoint "$W/winner/model" --bench "$W/fbs" --cases "$CASES" --device "$DEVICE" \
  --out "$W/bars.json" > "$W/bars.log" 2>&1
fulldit eval --checkpoint "$W/winner/model" --bench "$W/fbs" --out "$W/eval" --generate-only --cases "$CASES" \
  --device "$DEVICE" --combos camera identity depth camera+identity+depth > "$W/eval.log" 2>&1
fulldit eval --checkpoint "$W/winner/model" --bench "$W/fbs" --out "$W/eval" --generate-only \
  --cases $((CASES / 2)) --device "$DEVICE" \
  --combos camera+identity camera+depth identity+depth first-frame prefix >> "$W/eval.log" 2>&1
echo done | tee -a "$W/plan.txt"
