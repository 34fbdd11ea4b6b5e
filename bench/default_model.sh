#!/usr/bin/env bash
# The default model's recipe comparison on one GPU (issue #14), as run for the BENCHMARKS.md table:
#   1. bench/train_loop.py: the real loop (rendering in the background) vs its data-free twin, per size (item 0);
#   2. candidates trained for the same wall time each (EACH minutes, validation worlds, never FullBench):
#      s    synth-s's architecture (384 x 8) from scratch, configs/synth-m.yaml's recipe;
#      m    configs/synth-m.yaml (512 x 10) from scratch;
#      deep DEFAULT grown to twice its blocks (`fulldit convert --from deepen`, exactly the same outputs at the
#           start), fine-tuned as phase 4 was (BENCHMARKS.md: phase 4 = the same default NOT grown, 5.8 minutes);
#   3. the best by validation (psnr_all + psnr_text) continues for MORE minutes (--resume: weights, moments, EMA);
#   4. bench/sample_sweep.py on the shipped default and on the winner (sampler settings, validation worlds).
#   bash bench/default_model.sh WORK [EACH_MINUTES] [MORE_MINUTES]
# DEFAULT (the checkpoint to grow), EXTRA (overrides for every run), LOOP_STEPS, CLIPS, SWEEP, DEVICE: smoke runs.
set -euo pipefail
W=${1:?work folder}; EACH=${2:-4}; MORE=${3:-6}
DEFAULT=${DEFAULT:-checkpoints/default}; EXTRA=${EXTRA:-}; LOOP_STEPS=${LOOP_STEPS:-16}; CLIPS=${CLIPS:-16}
DEVICE=${DEVICE:-cuda}; SWEEP=${SWEEP:---steps 12 25 --guidance 1 2 3 --text-guidance 1 3}
mkdir -p "$W"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # bench/*.py import fulldit
S="model.dim=384 model.layers=8 model.heads=3 model.ffn_dim=1536"
FINE="train.lr=2e-4 train.min_lr=2e-5 train.warmup=40 train.ema=0.995 train.data.seed=9000000"  # phase 4's
SCRATCH="train.warmup=50"  # a run of a few hundred steps: warm-up in proportion
note() { echo "$(date +%T) $*" | tee -a "$W/plan.txt"; }

for size in s m; do  # item 0, per size (OUT unset: train_loop.py would write its table there)
  arch=$([ "$size" = s ] && echo "$S" || true)
  OUT= python bench/train_loop.py --configs configs/synth-m.yaml --device "$DEVICE" --steps "$LOOP_STEPS" \
    --warmup $((LOOP_STEPS / 2)) --no-memory $arch $EXTRA > "$W/loop-$size.log" 2>&1 || note "loop $size failed"
done
rate() { python -c "import json,sys; print(([json.loads(l) for l in open(sys.argv[1]) if l.startswith('{\"config')] or [{'samples_per_s': 0}])[0]['samples_per_s'])" "$1"; }
BATCH=$(python -c "from fulldit.train.config import load_train_config as l; print(l('configs/synth-m.yaml', '$EXTRA'.split())[1].batch_size)")
steps_for() { python -c "print(max(8, int(${2:-1} * $(rate "$1") / $BATCH * 60 * ($EACH + $MORE) * 0.97)))"; }
S_STEPS=$(steps_for "$W/loop-s.log"); M_STEPS=$(steps_for "$W/loop-m.log")
note "planned steps (cosine sized for EACH + MORE minutes): s $S_STEPS, m $M_STEPS"

train() {  # name, steps, extra overrides...
  local name=$1 steps=$2; shift 2
  python -m fulldit.cli train --config configs/synth-m.yaml --out "$W/$name" --device "$DEVICE" "$@" $EXTRA \
    train.steps="$steps" train.validate_every=1000000 train.validate_clips="$CLIPS" train.sample_every=0 \
    train.log_every=25 >> "$W/$name.log" 2>&1
}
train s "$S_STEPS" $S $SCRATCH train.max_minutes="$EACH"; note "s done"
train m "$M_STEPS" $SCRATCH train.max_minutes="$EACH"; note "m done"
while [ ! -f "$DEFAULT/config.json" ]; do sleep 5; done  # on the GPU machine it may arrive with a later call
read -r DIM LAYERS HEADS FFN < <(python -c "from fulldit.checkpoint import read_config as r; m = r('$DEFAULT').model
print(m.dim, 2 * m.layers, m.heads, m.ffn_dim)")
DEEP="model.dim=$DIM model.layers=$LAYERS model.heads=$HEADS model.ffn_dim=$FFN"
D_STEPS=$(steps_for "$W/loop-s.log" "8 / $LAYERS")  # s's rate scaled by blocks (same width as synth-s)
python -m fulldit.cli convert --from deepen "$DEFAULT" --out "$W/deep-init" --layers "$LAYERS" > "$W/deep.log" 2>&1
train deep "$D_STEPS" --init "$W/deep-init" $DEEP $FINE train.max_minutes="$EACH"; note "deep ($LAYERS blocks, $D_STEPS steps) done"
python bench/sample_sweep.py --checkpoint "$DEFAULT" --clips "$CLIPS" --device "$DEVICE" $SWEEP \
  > "$W/sweep-default.jsonl" 2> "$W/sweep-default.err" &
best=$(python - "$W" <<'PY'
import json, sys
rows = {n: json.loads(open(f"{sys.argv[1]}/{n}/validation.jsonl").read().splitlines()[-1]) for n in ("s", "m", "deep")}
print(max(rows, key=lambda n: rows[n]["psnr_all"] + rows[n]["psnr_text"]))
PY
)
note "winner: $best"
case $best in
  s) train s "$S_STEPS" --resume $S $SCRATCH train.max_minutes="$MORE" ;;
  m) train m "$M_STEPS" --resume $SCRATCH train.max_minutes="$MORE" ;;
  deep) train deep "$D_STEPS" --resume --init "$W/deep-init" $DEEP $FINE train.max_minutes="$MORE" ;;
esac
ln -sfn "$best" "$W/winner"
wait
python bench/sample_sweep.py --checkpoint "$W/winner/model" --clips "$CLIPS" --device "$DEVICE" $SWEEP \
  > "$W/sweep-winner.jsonl" 2> "$W/sweep-winner.err"
note done
