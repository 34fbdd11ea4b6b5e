#!/usr/bin/env bash
# Session driver (2026-12-02): A/B of the default's continuation, flow.shift 3 (A) vs 6 (B), both from phase 8's
# weights, run side by side on one GPU for the same minutes, then sampler-sweep + x0 diagnostic of phase 8, A, B,
# and FullBench videos of the winner (by validation psnr_all).
# As run: the diagnostics loop below failed (bench/*.py need the repository on PYTHONPATH: add :$PWD); the sweep of
# phase 8 and bench/x0_error.py of all three were run by hand afterwards (sweep-p8.txt, x0-error-h200.txt).
set -uo pipefail
W=/tmp/ab; mkdir -p $W/back
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
log() { echo "$(date +%T) $*" >> $W/session.log; }
COMBOS="camera depth identity camera+identity+depth"
OMP_NUM_THREADS=6 nice -n 19 python -m fulldit.cli synth --bench --out $W/fullbench --cases 32 --combos $COMBOS \
  --device cpu > $W/synth.log 2>&1 &
SYNTH=$!
log "bench synth started"
while [ ! -f /tmp/default/config.json ]; do sleep 3; done
log "weights in; training A and B"
export DEFAULT=/tmp/default CASES=0 SEED=33000000 RATE=${RATE:-0.7} VALIDATE=300
NAME=s16-a bash bench/continue_default.sh $W/a auto ${MIN:-14} > $W/a.out 2>&1 &
A=$!
NAME=s16-b bash bench/continue_default.sh $W/b auto ${MIN:-14} flow.shift=6 > $W/b.out 2>&1 &
B=$!
wait $A $B
log "trained: A $(tail -n 1 $W/a/run/validation.jsonl) B $(tail -n 1 $W/b/run/validation.jsonl)"
for pair in p8:/tmp/default a:$W/a/run/model b:$W/b/run/model; do
  name=${pair%%:*}; ckpt=${pair#*:}
  python bench/sample_sweep.py --checkpoint $ckpt --clips 16 --device cuda --steps 8 --guidance-min-t 0.7 \
    2>>$W/diag.err | sed "s/^/$name /" >> $W/sweep.txt
  python bench/x0_error.py --checkpoint $ckpt --clips 16 --device cuda 2>>$W/diag.err | sed "s/^/$name /" >> $W/x0.txt
done
log "diagnostics done"
WIN=$(python -c "
import json
v = {k: json.loads(open('$W/%s/run/validation.jsonl' % k).read().splitlines()[-1])['psnr_all'] for k in 'ab'}
print(max(v, key=v.get))")
log "winner $WIN"
wait $SYNTH
log "bench synth done"
python -m fulldit.cli eval --checkpoint $W/$WIN/run/model --bench $W/fullbench --out $W/report --cases 32 \
  --combos $COMBOS --device cuda --generate-only > $W/eval.log 2>&1
log "fullbench videos done"
cp -r $W/$WIN/run/model $W/back/model
for k in a b; do cp $W/$k/run/validation.jsonl $W/back/validation-$k.jsonl; cp $W/$k/scalars.csv $W/back/scalars-$k.csv; \
  cp $W/$k/train.log $W/back/train-$k.log; cp $W/$k/plan.txt $W/back/plan-$k.txt; done
cp $W/sweep.txt $W/x0.txt $W/session.log $W/eval.log $W/back/ 2>/dev/null
tar -C $W -czf $W/back/videos.tgz report
log "packed $(du -sh $W/back | cut -f1)"
log done
