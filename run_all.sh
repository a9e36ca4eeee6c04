#!/usr/bin/env bash
# Reproduce Tables 1 and 3 of the RAFT paper, plus the BYOL'/RAFT mirror experiment, on one GPU.
#
#   bash run_all.sh                      # every row, 3 seeds, 300 epochs (the paper's setup)
#   QUICK=1 bash run_all.sh              # reduced profile: 1 seed, 64 px, 10 epochs, 4 runs at a time
#   EPOCHS=1 TRAIN_SUBSET=500 SEEDS=1 ARGS="--encoder small --image-size 16 --eval-epochs 5 --knn-every 0" \
#     bash run_all.sh                    # CPU smoke run (the accuracies mean nothing)
#
# Knobs (environment): EPOCHS, SEEDS (seeds 0..SEEDS-1), JOBS (runs in parallel on one GPU),
# DATA_DIR, OUT_DIR, TRAIN_SUBSET (0: all), QUICK=1, ARGS (extra raft.py flags for every run),
# PYTHON (the interpreter, default python). Every run is started with --resume: raft.py skips
# it if OUT_DIR/<run>-s<seed>.json is finished with the same settings, resumes it from its
# checkpoint if interrupted, and refuses a finished file made with other settings. A failed
# run does not stop the others; it is listed at the end and the script exits 1.
# Tables: OUT_DIR/table1.md, table3.md, mirror.md.
set -uo pipefail

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
  EPOCHS=${EPOCHS:-10}; SEEDS=${SEEDS:-1}; JOBS=${JOBS:-4}; OUT_DIR=${OUT_DIR:-results/quick}
  PROFILE="--image-size 64 --eval-epochs 20 --knn-every 2"
else
  EPOCHS=${EPOCHS:-300}; SEEDS=${SEEDS:-3}; JOBS=${JOBS:-1}; OUT_DIR=${OUT_DIR:-results}
  PROFILE=""
fi
DATA_DIR=$(realpath -m "${DATA_DIR:-data}")  # paths as the user meant them, before the cd below
OUT_DIR=$(realpath -m "$OUT_DIR")
TRAIN_SUBSET=${TRAIN_SUBSET:-0}
ARGS=${ARGS:-}
PYTHON=${PYTHON:-python}
cd "$(dirname "$0")"

mkdir -p "$OUT_DIR/logs"
failed="$OUT_DIR/failed.txt"
: > "$failed"

run() {  # run NAME SEED FLAGS...
  local name=$1 seed=$2; shift 2
  local out="$OUT_DIR/$name-s$seed.json" log="$OUT_DIR/logs/$name-s$seed.log"
  echo "run      $name seed $seed (log: $log)"
  # the run's own flags come last, so that e.g. Rand-Baseline's --epochs 0 wins
  if ! $PYTHON raft.py --data-dir "$DATA_DIR" --epochs "$EPOCHS" --train-subset "$TRAIN_SUBSET" $PROFILE $ARGS \
       --seed "$seed" --out "$out" --resume "$@" >"$log" 2>&1; then
    echo "$name seed $seed: $(tail -n 1 "$log")" >> "$failed"
    echo "FAILED   $name seed $seed (see $log)"
  fi
}

runs=$($PYTHON raft.py --list-runs) || exit 1
first=1
while IFS=$'\t' read -r name flags; do
  for ((seed = 0; seed < SEEDS; seed++)); do
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
    run "$name" "$seed" $flags &
    if [ "$first" = 1 ]; then wait; first=0; fi  # alone: a CIFAR-10 download happens once
  done
done <<< "$runs"
wait

if $PYTHON raft.py --tables "$OUT_DIR" > /dev/null; then
  echo "tables: $OUT_DIR/table1.md $OUT_DIR/table3.md $OUT_DIR/mirror.md"
else
  echo "writing the tables failed" >> "$failed"
fi
if [ -s "$failed" ]; then
  echo "failed runs ($(wc -l < "$failed")):"
  cat "$failed"
  exit 1
fi
