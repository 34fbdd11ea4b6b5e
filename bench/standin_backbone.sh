#!/usr/bin/env bash
# Issue #15 item 3 on one GPU: a stand-in pretrained backbone taken through the user's Wan2.1 path, then fine-tuned
# with the conditions six ways at equal steps, FullBench videos and text-only drift of every saved checkpoint.
#   1. bench/train_wan_vae.py: a small AutoencoderKLWan trained on the world (VAE_MIN minutes);
#   2. bench/make_umt5.py: a random-init UMT5 encoder + word-level tokenizer of the world's captions;
#   3. fulldit train configs/standin-t2v.yaml: the text-to-video backbone (no conditions; T2V_MIN minutes);
#   4. fulldit convert --from fulldit RUN/model --to wan2.1: Wan2.1's own release layout (vae/, text_encoder/ beside);
#   5. fulldit convert --from wan2.1 WAN --vae WAN/vae --text-encoder WAN: the user's conversion, with conditions
#      camera, reference, depth behind closed gates; and again with --gate none: the same condition modules appended
#      without a gate (FullDiT's conditions, acting from the start: the no-gate variant's start); and again with
#      --gate-init GATE_INIT: the lse gates ajar (a closed gate passes the condition modules no gradient at all);
#   6. fulldit train configs/standin-fulldit.yaml per variant, GATES x SCALES: nogate (model.condition_gate=false),
#      separate (model.gate_merge=separate), lse (the default), lse-open (lse from the ajar conversion, its gates
#      at the backbone's rate so they cannot close before the modules are of use: a condition key can win attention
#      mass through its logits at any g > 0) at train.new_module_lr_scale 1 and 30, FT_STEPS steps, a checkpoint
#      every SAVE_EVERY; PARALLEL variants at a time (each is small: the GPU has room);
#   7. per variant and saved step in EVAL_STEPS: `fulldit eval --generate-only` on FullBench-Synth camera and depth
#      (CASES cases; videos only: the GPU machine lacks pycolmap) and bench/standin_table.py textonly (CLIPS
#      captions, text alone, against the backbone's own clips of the same prompts and seeds: the drift);
#   8. WORK/results/: everything but weights, in files of at most 15 MiB (the device returns <= 8 files of 16 MiB,
#      <= 64 MiB a call): common.tar.gz (logs, plan, JSON, configs, the benchmark) and eval.tar.gz.part-aa, -ab, ...
#      (every variant's videos and drift; `cat eval.tar.gz.part-* | tar -xzf - -C WORK`).
# Every stage is skipped when its output exists, and the trainings resume from their checkpoints, so a re-run after
# a stop continues. Then, on a CPU machine with pycolmap (unpack into WORK):
#   python bench/standin_table.py score --bench WORK/fullbench WORK/eval/*/step*
#   python bench/standin_table.py table WORK          # WORK/table.md: the BENCHMARKS.md "stand-in backbone" table
#
#   bash bench/standin_backbone.sh WORK [VAE_MIN=4] [T2V_MIN=8]
#   bash bench/standin_backbone.sh WORK pack          # only stage 8: pack what there is
#   bash bench/standin_backbone.sh WORK pack-base     # WORK/base/part-*: the release (WORK/wan, VAE in bf16, ~180
#                                                     # MB), to bring home over several calls; unpacked into a later
#                                                     # WORK (cat part-* | tar -xf - -C WORK), stages 1-3 are skipped
# Needs diffusers importable (AutoencoderKLWan). The GPU machine has no diffusers: carry its wheel in .whl and run
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
# first. A device call lasts at most 10 minutes, the whole chain ~25, so start it in its own session there, poll
# (each call keeps the machine; one left idle ~30 s is given back with everything on it), and bring back what there
# is at every poll, so that a lost machine loses only what came since:
#   setsid nohup bash bench/standin_backbone.sh /tmp/standin > /tmp/standin.out 2>&1 &
#   sleep 520; tail -n 3 /tmp/standin/plan.txt; bash bench/standin_backbone.sh /tmp/standin pack; \
#     cp /tmp/standin/results/* $OUT/               # <= 64 MiB a call: the parts over two calls if more
# Measured on one H200 (2026-12-02, BENCHMARKS.md "Stand-in backbone"): VAE 12.3 clips/s (3.5 min: 323 steps,
# held-out PSNR 18.4 dB), backbone 7 min (1,305 steps) + 1 for its validation and the conversions, eight fine-tunes at
# once (PARALLEL=8) at batch 16: no gate 0.92 steps/s each, separate 0.87, lse 0.53 (measured before the mask indices
# stopped syncing the GPU); the evaluation of all eight 3.5 min. With VAE_MIN=3.5 T2V_MIN=7 FT_STEPS=300
# EVAL_STEPS="100 200 300" FT_ARGS=train.max_minutes=6 the chain took 23 minutes. In 300 steps no variant made the
# camera act: a run that ranks them needs ~1,500+ steps of fewer variants (GATES="nogate lse-open" SCALES=1), which
# fits a session only with the release brought home (pack-base) and reused.
# Environment: DEVICE (cuda), PARALLEL (4), VAE_ARGS, UMT5_ARGS, T2V_ARGS and FT_ARGS (extra arguments / overrides),
# T2V_STEPS (auto: RATE steps/s x the minutes; RATE 4, a guess at batch 64 bounded by rendering + VAE encoding),
# FT_STEPS (400), SAVE_EVERY (100), EVAL_STEPS ("100 200 400"), GATES ("nogate separate lse lse-open"),
# GATE_INIT (0.05), SCALES ("1 30"),
# CASES (8 per combination), CLIPS (8 text-only prompts), SAMPLE_STEPS (20). TINY=1: toy sizes on the CPU, a smoke
# run of every stage (6 minutes on 2 busy cores; PARALLEL_TINY, TINY_EVAL_STEPS); tests/test_standin.py runs the same
# pieces in-process.
{  # read to the closing brace before running: editing this file while it runs (bash reads scripts as it goes) is safe
set -euo pipefail
W=${1:?work folder}
mkdir -p "$W/logs" "$W/results"
W=$(cd "$W" && pwd)
export PYTHONUNBUFFERED=1 START=${START:-$(date +%s)}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # bench/*.py import fulldit (no pip install on the GPU machine)
note() { local t=$(($(date +%s) - START)); echo "$(date +%T) [$((t / 60))m$((t % 60))s] $*" | tee -a "$W/plan.txt"; }

pack() {  # stage 8: small files only (no safetensors: the weights stay on the machine)
  local common=(plan.txt logs table.md table.jsonl vae/config.json vae/train_log.json umt5 t2v/validation.jsonl
                t2v/model/config.json wan/config.json fd/config.json fd-nogate/config.json fd-open/config.json
                fullbench eval/backbone)
  local have=() f
  for f in "${common[@]}"; do [ -e "$W/$f" ] && have+=("$f"); done
  tar -C "$W" --exclude='*.safetensors' -czf "$W/results/common.tar.gz" "${have[@]}"
  rm -f "$W"/results/eval.tar.gz.part-*
  local evals=()
  for f in "$W"/eval/*-x*; do [ -d "$f" ] && evals+=("eval/$(basename "$f")"); done
  if [ ${#evals[@]} -gt 0 ]; then  # one stream in 15 MiB parts: any number of variants in few returned files
    tar -C "$W" --exclude='*.safetensors' -czf - "${evals[@]}" | split -b 15M - "$W/results/eval.tar.gz.part-"
  fi
  note "packed: $(cd "$W/results" && du -h -- * | tr '\t\n' ' ')"
}
if [ "${2:-}" = pack ]; then pack; exit 0; fi
if [ "${2:-}" = pack-base ]; then python bench/standin_table.py base "$W"; exit 0; fi
VAE_MIN=${2:-4}; T2V_MIN=${3:-8}

DEVICE=${DEVICE:-cuda}; PARALLEL=${PARALLEL:-4}; RATE=${RATE:-4}
FT_STEPS=${FT_STEPS:-400}; SAVE_EVERY=${SAVE_EVERY:-100}; EVAL_STEPS=${EVAL_STEPS:-"100 200 400"}
GATES=${GATES:-"nogate separate lse lse-open"}; SCALES=${SCALES:-"1 30"}; GATE_INIT=${GATE_INIT:-0.05}
CASES=${CASES:-8}; CLIPS=${CLIPS:-8}; SAMPLE_STEPS=${SAMPLE_STEPS:-20}
FRAMES=17; SIZE=128; MODEL=()
VAE_ARGS=${VAE_ARGS:-}; UMT5_ARGS=${UMT5_ARGS:-}; T2V_ARGS=${T2V_ARGS:-}; FT_ARGS=${FT_ARGS:-}
if [ "${TINY:-0}" = 1 ]; then  # every stage at toy sizes on the CPU: checks the plumbing, learns nothing
  DEVICE=cpu; FRAMES=5; SIZE=32; PARALLEL=${PARALLEL_TINY:-1}; CASES=1; CLIPS=2; SAMPLE_STEPS=2
  FT_STEPS=2; SAVE_EVERY=1; EVAL_STEPS=${TINY_EVAL_STEPS:-2}; T2V_STEPS=2
  VAE_ARGS="--steps 2 --batch 1 --base-dim 8 --z-dim 4 --heldout 1 --stats-clips 1 --warmup 1 $VAE_ARGS"
  UMT5_ARGS="--dim 32 --layers 1 --head-dim 16 --captions 20 $UMT5_ARGS"
  MODEL=(model.dim=32 model.heads=2 model.layers=2 model.ffn_dim=64 model.in_channels=4 model.text_dim=32
         model.freq_dim=32 train.batch_size=2 train.warmup=1 train.precision=fp32 train.data.workers=0
         train.validate_every=0 sample.frames=$FRAMES sample.height=$SIZE sample.width=$SIZE sample.steps=2
         codec.dtype=float32)  # bf16 convolutions are slow on CPUs
fi
DATA=(train.data.frames=$FRAMES train.data.height=$SIZE train.data.width=$SIZE)
if [ -z "${T2V_STEPS:-}" ]; then
  T2V_STEPS=$(python -c "print(max(1, int(($T2V_MIN - 0.7) * 60 * $RATE)))")
fi
py() { python "$@"; }
fulldit() { python -m fulldit.cli "$@"; }
# the training's --resume where a stopped run left checkpoints
resume_flag() { [ -f "$1/checkpoints/latest" ] && echo --resume || true; }
note "start: $W on $DEVICE; VAE $VAE_MIN min, backbone $T2V_MIN min / $T2V_STEPS steps; fine-tunes $FT_STEPS steps"
command -v nvidia-smi > /dev/null && nvidia-smi >> "$W/logs/gpu.log" 2>&1 || true

# 0. FullBench-Synth camera and depth cases, rendered on the CPU (niced) while the VAE trains; 2 cases at least so
# that a camera case has another path to compare with.
if [ ! -f "$W/fullbench/bench.json" ]; then
  rm -rf "$W/fullbench"
  OMP_NUM_THREADS=4 nice -n 19 python -m fulldit.cli synth --bench --out "$W/fullbench" --cases $((CASES > 1 ? CASES : 2)) \
    --combos camera depth --frames $FRAMES --size ${SIZE}x$SIZE --device cpu > "$W/logs/bench.log" 2>&1 &
fi

# 1-3 are skipped when WORK/wan holds a release already (a stand-in brought back with pack-base and unpacked here):
# everything after the export reads only WORK/wan.
HAVE_WAN=$([ -f "$W/wan/config.json" ] && echo 1 || echo 0)
[ "$HAVE_WAN" = 1 ] && note "reusing the stand-in release in $W/wan: no VAE, text encoder or backbone training"

# 1-2. VAE and text encoder (each written atomically by its script).
if [ "$HAVE_WAN" = 0 ] && [ ! -f "$W/vae/config.json" ]; then
  note "VAE: $VAE_MIN minutes"
  py bench/train_wan_vae.py --device "$DEVICE" --minutes "$VAE_MIN" --frames $FRAMES --size $SIZE --out "$W/vae" \
    $VAE_ARGS > "$W/logs/vae.log" 2>&1
  note "VAE: $(tail -n 1 "$W/logs/vae.log" | python -c "import json,sys; d=json.loads(sys.stdin.read()); print(d['steps'], 'steps,', d['clips_per_s'], 'clips/s, held-out PSNR', d['heldout_psnr'])")"
fi
if [ "$HAVE_WAN" = 0 ] && [ ! -f "$W/umt5/text_encoder/config.json" ]; then
  py bench/make_umt5.py --out "$W/umt5" $UMT5_ARGS > "$W/logs/umt5.log" 2>&1
  note "UMT5: $(tail -n 1 "$W/logs/umt5.log")"
fi

# 3. The text-to-video backbone.
if [ "$HAVE_WAN" = 0 ] && [ ! -f "$W/t2v/model/config.json" ]; then
  note "backbone: $T2V_STEPS steps or $T2V_MIN minutes"
  fulldit train --config configs/standin-t2v.yaml --out "$W/t2v" --device "$DEVICE" $(resume_flag "$W/t2v") \
    codec.path="$W/vae" text.path="$W/umt5" train.steps="$T2V_STEPS" train.max_minutes="$T2V_MIN" \
    "${DATA[@]}" "${MODEL[@]}" $T2V_ARGS >> "$W/logs/t2v.log" 2>&1
  note "backbone: $(grep -o 'finished at step [0-9]*\|stopped at step [0-9]*' "$W/logs/t2v.log" | tail -n 1); $(tail -n 1 "$W/t2v/validation.jsonl" 2>/dev/null || echo no validation)"
fi

# 4-5. Wan2.1's release layout, and back as the user converts it (the command export_wan prints).
if [ ! -f "$W/wan/config.json" ]; then
  fulldit convert --from fulldit "$W/t2v/model" --to wan2.1 --out "$W/wan" > "$W/logs/export.log" 2>&1
  note "export: $(head -n 1 "$W/logs/export.log")"
fi
if [ ! -f "$W/fd/config.json" ]; then
  fulldit convert --from wan2.1 "$W/wan" --vae "$W/wan/vae" --text-encoder "$W/wan" --out "$W/fd" \
    > "$W/logs/convert.log" 2>&1
  note "convert: $(tail -n 1 "$W/logs/convert.log")"
fi
if [ ! -f "$W/fd-nogate/config.json" ]; then
  fulldit convert --from wan2.1 "$W/wan" --vae "$W/wan/vae" --text-encoder "$W/wan" --gate none --out "$W/fd-nogate" \
    > "$W/logs/convert-nogate.log" 2>&1
fi
if [ ! -f "$W/fd-open/config.json" ]; then
  fulldit convert --from wan2.1 "$W/wan" --vae "$W/wan/vae" --text-encoder "$W/wan" --gate-init "$GATE_INIT" \
    --out "$W/fd-open" > "$W/logs/convert-open.log" 2>&1
fi

wait  # the benchmark
[ -f "$W/fullbench/bench.json" ] || { note "benchmark failed: $W/logs/bench.log"; exit 1; }
TEXT=(--bench "$W/fullbench" --clips "$CLIPS" --steps "$SAMPLE_STEPS" --device "$DEVICE")
if [ ! -f "$W/eval/backbone/textonly/textonly.json" ]; then  # the reference of every drift: the converted backbone
  py bench/standin_table.py textonly "${TEXT[@]}" --save-clips --run "$W/fd" "$W/eval/backbone/textonly" \
    > "$W/logs/textonly-backbone.log" 2>&1
  note "backbone text-only: $(tail -n 1 "$W/logs/textonly-backbone.log")"
fi

# 6-7. One job per variant: fine-tune, then FullBench videos and text-only clips of each saved step.
variant() {
  set -euo pipefail
  local v=$1 gate=${1%-x*} scale=${1##*-x} init=$W/fd over=() runs=() s ck
  case $gate in
    nogate) init=$W/fd-nogate; over=(model.condition_gate=false) ;;
    separate) over=(model.gate_merge=separate) ;;
    lse) over=(model.gate_merge=lse) ;;
    lse-open) init=$W/fd-open; over=(model.gate_merge=lse "train.new_modules=[conditions]") ;;
    *) echo "unknown gate $gate" >&2; return 1 ;;
  esac
  export OMP_NUM_THREADS=4
  if [ ! -f "$W/ft/$v/model/config.json" ]; then
    python -m fulldit.cli train --config configs/standin-fulldit.yaml --out "$W/ft/$v" --init "$init" \
      --device "$DEVICE" $(resume_flag "$W/ft/$v") "${over[@]}" train.new_module_lr_scale="$scale" \
      train.steps="$FT_STEPS" train.save_every="$SAVE_EVERY" train.keep=1000 "${DATA[@]}" "${MODEL[@]}" $FT_ARGS \
      >> "$W/logs/ft-$v.log" 2>&1
    note "fine-tune $v: $(grep -o 'finished at step [0-9]*\|stopped at step [0-9]*' "$W/logs/ft-$v.log" | tail -n 1)"
  fi
  # the listed steps that were saved, and the stop's checkpoint when train.max_minutes ended the run before the last
  local steps=() last
  for s in $EVAL_STEPS; do
    [ -f "$W/ft/$v/checkpoints/$(printf step_%08d "$s")/ema/config.json" ] && steps+=("$s") || note "$v: no step $s"
  done
  last=$(cat "$W/ft/$v/checkpoints/latest" 2>/dev/null || echo step_0)
  last=$((10#${last#step_}))
  [ "$last" -gt "$(printf '%s\n' 0 "${steps[@]}" | sort -n | tail -n 1)" ] && steps+=("$last")
  for s in "${steps[@]}"; do
    ck=$W/ft/$v/checkpoints/$(printf step_%08d "$s")/ema
    if [ ! -f "$W/eval/$v/step$s/.generated" ]; then
      python -m fulldit.cli eval --checkpoint "$ck" --bench "$W/fullbench" --out "$W/eval/$v/step$s" --cases "$CASES" \
        --combos camera depth --steps "$SAMPLE_STEPS" --device "$DEVICE" --generate-only >> "$W/logs/eval-$v.log" 2>&1
      touch "$W/eval/$v/step$s/.generated"
    fi
    [ -f "$W/eval/$v/step$s/textonly/textonly.json" ] || runs+=(--run "$ck" "$W/eval/$v/step$s/textonly")
  done
  if [ ${#runs[@]} -gt 0 ]; then
    python bench/standin_table.py textonly "${TEXT[@]}" --reference "$W/eval/backbone/textonly" "${runs[@]}" \
      >> "$W/logs/textonly-$v.log" 2>&1
  fi
  note "$v done: $(grep -h 'drift' "$W/logs/textonly-$v.log" 2>/dev/null | sed 's/.*ema: //' | tr '\n' ';')"
}
export -f variant note resume_flag
export W DEVICE CASES CLIPS SAMPLE_STEPS FT_STEPS SAVE_EVERY EVAL_STEPS FT_ARGS
export DATA_STR="${DATA[*]}" MODEL_STR="${MODEL[*]}" TEXT_STR="${TEXT[*]}"
VARIANTS=$(for g in $GATES; do for s in $SCALES; do echo "$g-x$s"; done; done)
note "variants, $PARALLEL at a time: $(echo $VARIANTS)"
# arrays do not cross into `bash -c`: rebuilt there from their space-joined strings (no spaces inside items)
echo "$VARIANTS" | xargs -P "$PARALLEL" -I{} bash -c \
  'read -ra DATA <<< "$DATA_STR"; read -ra MODEL <<< "$MODEL_STR"; read -ra TEXT <<< "$TEXT_STR"; variant "$1"' _ {} \
  || note "a variant failed: see $W/logs/ft-*.log and eval-*.log"
py bench/standin_table.py table "$W" > "$W/logs/table.log" 2>&1 || true  # drift and gates; FullBench after scoring
pack
note done
exit
}
