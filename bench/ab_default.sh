#!/usr/bin/env bash
# A/B of the shipped default's continuation on one GPU (issue #14 item 1): every arm trains side by side from the same
# weights (DEFAULT) on the same world seeds for the same minutes, so the arms differ only in their overrides; the arm
# with the best last validation (psnr_all, 16 unseen worlds) wins, and its FullBench-Synth videos are generated.
# Side by side costs no throughput: phase 9's two arms trained 50 clips/s each on one H200, 100 together, where one
# run alone trained 75-89 (bench/results/default-phase9-h200-2026-12-02/).
#   bash bench/ab_default.sh WORK MINUTES "OVERRIDES A" "OVERRIDES B" [...]      ("" for an arm without overrides)
# An arm's words in capitals set its environment for bench/continue_default.sh (RATE=0.35: a slower arm's steps/s);
# an arm with model.layers=N (text.layers=N, text.max_length=N, model.depth.reproject=true) starts from DEFAULT grown to
# N blocks (its byte text encoder to N layers, or to prompts of N tokens; its depth condition reading the reprojected
# first frame; `fulldit convert --from deepen`: the same outputs where prompts fitted).
# Writes WORK/arm-N/ (bench/continue_default.sh's folder), WORK/winner, WORK/report/videos, then WORK/x0.jsonl
# (bench/x0_error.py of every arm and of DEFAULT, "arm" added) and with BASELINE=1 WORK/baseline.jsonl (DEFAULT's
# validation at its own sampler, the arms' step 0: the run that made DEFAULT usually recorded it); score the videos
# where pycolmap is installed:
#   fulldit eval --videos WORK/report/videos --bench WORK/fullbench --out REPORT --cases CASES --combos ...
# DEFAULT, CONFIG, DEVICE, SEED, CASES (FullBench cases of the winner; 0: none), VALIDATE (default: only when an arm
# stops, as the arms are compared there; phase 10's arms spent 4 of their 13 minutes in a validation at step 300 and
# stopped at 301), RATE (steps/s of ONE arm while all run: two synth-s16 arms on an H200 at micro-batch 32, 0.7;
# three at micro-batch 16, 0.40 for 16 blocks and 0.30 for 22, compilation included) as in
# bench/continue_default.sh; micro-batches of 32 for two arms take 132 GB of an H200 (three arms: add
# train.micro_batch=16 to every arm: 125 GB with a 22-block arm). A plumbing check on the CPU in a
# minute: a 1-step configs/tiny.yaml checkpoint as DEFAULT, CONFIG=configs/tiny.yaml DEVICE=cpu CASES=0, MINUTES
# 0.02, every arm with overrides for 32x32x4 clips, 2 sampling steps, batch 2, no workers, fp32, no compile.
set -euo pipefail
W=${1:?work folder}; MINUTES=${2:?minutes per arm}; shift 2
[ $# -ge 2 ] || { echo "give at least two arms' overrides" >&2; exit 2; }
DEFAULT=${DEFAULT:-checkpoints/default}; CASES=${CASES:-32}
COMBOS=${COMBOS:-"camera depth identity camera+identity+depth"}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
mkdir -p "$W"
note() { echo "$(date +%T) $*" | tee -a "$W/plan.txt"; }

if [ "$CASES" -gt 0 ]; then  # the benchmark's clips, rendered on the CPU (niced) while the arms train
  OMP_NUM_THREADS=6 nice -n 19 python -m fulldit.cli synth --bench --out "$W/fullbench" --cases "$CASES" \
    --combos $COMBOS --device cpu > "$W/synth.log" 2>&1 &
  SYNTH=$!
fi
while [ ! -f "$DEFAULT/config.json" ]; do sleep 3; done  # on the GPU machine the shards may arrive with later calls
# OpenMP threads per arm, bounded as torchrun bounds them per process: phase 10's three arms ran 16 each on 16 cores,
# and their validations took 3-4 minutes with the GPU idle (phase 9, two arms: 140 s; cause not isolated)
THREADS=${OMP_NUM_THREADS:-$(( $(nproc) / (2 * $#) > 0 ? $(nproc) / (2 * $#) : 1 ))}
pids=(); n=0
for arm in "$@"; do
  n=$((n + 1)); note "arm-$n: $arm"
  overrides=()
  arm_env=(DEFAULT="$DEFAULT" CASES=0 NAME="arm-$n" RATE="${RATE:-0.7}" VALIDATE="${VALIDATE:-1000000}"
    OMP_NUM_THREADS="$THREADS")
  grow=()
  for word in $arm; do  # words in capitals (RATE=0.35) are this arm's environment, the rest training overrides
    if [[ $word =~ ^[A-Z_]+= ]]; then arm_env+=("$word"); else overrides+=("$word"); fi
    # a deeper arm (transformer or byte text encoder) starts from DEFAULT grown to that depth
    if [[ $word =~ ^model\.layers=([0-9]+)$ ]]; then grow+=(--layers "${BASH_REMATCH[1]}"); fi
    if [[ $word =~ ^text\.layers=([0-9]+)$ ]]; then grow+=(--text-layers "${BASH_REMATCH[1]}"); fi
    if [[ $word =~ ^text\.max_length=([0-9]+)$ ]]; then grow+=(--text-max-length "${BASH_REMATCH[1]}"); fi
    if [[ $word == model.depth.reproject=true ]]; then grow+=(--depth-reproject); fi
  done
  if [ ${#grow[@]} -gt 0 ]; then
    python -m fulldit.cli convert --from deepen "$DEFAULT" --out "$W/arm-$n/init" "${grow[@]}" > "$W/arm-$n.grow.log" 2>&1
    arm_env+=(DEFAULT="$W/arm-$n/init")
  fi
  env "${arm_env[@]}" bash bench/continue_default.sh "$W/arm-$n" auto "$MINUTES" "${overrides[@]}" \
    > "$W/arm-$n.out" 2>&1 &
  pids+=($!)
done
wait "${pids[@]}"
python - "$W" "$n" > "$W/winner" <<'EOF'
import json, sys
from pathlib import Path
work, n = Path(sys.argv[1]), int(sys.argv[2])
last = {i: json.loads((work / f"arm-{i}/run/validation.jsonl").read_text().splitlines()[-1]) for i in range(1, n + 1)}
print(max(last, key=lambda i: last[i]["psnr_all"]))
EOF
WIN=$(cat "$W/winner"); note "winner arm-$WIN: $(tail -n 1 "$W/arm-$WIN/run/validation.jsonl")"
if [ "$CASES" -gt 0 ]; then  # the bars' videos before the diagnostics: device time may end first
  wait "$SYNTH"
  python -m fulldit.cli eval --checkpoint "$W/arm-$WIN/run/model" --bench "$W/fullbench" --out "$W/report" \
    --cases "$CASES" --combos $COMBOS --generate-only > "$W/eval.log" 2>&1
  note "FullBench videos of arm-$WIN in $W/report/videos"
fi
for i in $(seq "$n") default; do
  ckpt="$W/arm-$i/run/model"; [ "$i" = default ] && ckpt="$DEFAULT"
  python bench/x0_error.py --checkpoint "$ckpt" --clips 16 | python -c "
import json, sys
for line in sys.stdin: print(json.dumps({'arm': '$i', **json.loads(line)}))" >> "$W/x0.jsonl"
done
note "x0 tables in $W/x0.jsonl"
if [ "${BASELINE:-0}" = 1 ]; then  # DEFAULT's validation at its own sampler; usually its last run's last validation
  python bench/sample_sweep.py --checkpoint "$DEFAULT" --clips 16 > "$W/baseline.jsonl"
fi
note done
