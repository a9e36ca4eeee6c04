#!/usr/bin/env bash
# Reproduce Tables 1 and 3 of the RAFT paper, plus the BYOL'/RAFT mirror experiment.
#
#   bash run_all.sh                      # the paper's setup: every row, 3 seeds, 300 epochs, ResNet18 at 96 px
#   PROFILE=quick bash run_all.sh        # a GPU check: 1 seed, 64 px, 10 epochs, 4 runs at a time
#   PROFILE=cpu bash run_all.sh          # a laptop: the small encoder at 32 px, batch 64, 2,560 images, 2 seeds (results/cpu)
#   PROFILE=demo bash run_all.sh         # 5 minutes on 2 CPU cores: BYOL collapses without its predictor (results/demo)
#   GPUS=0,1,2,3 JOBS=2 bash run_all.sh  # spread the runs over 4 GPUs, 2 at a time on each
#   PRINT=1 bash run_all.sh              # print one self-contained command per run (for a cluster), run nothing
#   SEED_LIST=1 RUNS=byol-np bash run_all.sh   # re-run one run's seed 1 alone
#
# Knobs (environment): PROFILE (paper, quick, cpu, demo), EPOCHS, SEEDS (a count: seeds 0..SEEDS-1),
# SEED_LIST (the seeds themselves, comma-separated, e.g. 1 or 0,2; instead of SEEDS, not with it), JOBS (runs
# at a time, per GPU with GPUS), GPUS (comma-separated CUDA devices; runs are dealt to them
# round-robin), THREADS (CPU threads per run), RUNS (comma-separated run names; default all,
# see python tools/tables.py --list-runs), DATA_DIR, OUT_DIR, TRAIN_SUBSET (0: all), ARGS (extra
# raft.py flags for every run), PYTHON (the interpreter), PRINT=1, SNAPSHOTS (the epochs at which
# Figure 3's runs save snapshots; default: the paper's 1, 50, 100, 200, 300 of 300, scaled to
# EPOCHS), FIGURE4_KNN (the CPU profile's kNN monitor on Figure 4's runs, every N epochs; 0: as ARGS says).
# QUICK=1 is PROFILE=quick.
# Every run is started with --resume: raft.py skips it if OUT_DIR/<run>-s<seed>.json is
# finished with the same settings, resumes it from its checkpoint if interrupted, and refuses
# a finished file made with other settings. Each run's log, OUT_DIR/logs/<run>-s<seed>.log, is
# appended to, each time under a dated line with the command. A failed run does not stop the others;
# it is listed at the end and the script exits 1. Tables: OUT_DIR/table1.md, table3.md, mirror.md,
# trajectories.md and the figures (tools/tables.py); with PROFILE=demo instead OUT_DIR/demo.md and
# demo.png (tools/demo.py), the table printed; both only when a run finished, so that a folder whose
# runs were all refused or failed keeps its tables as they were. Runs go one at a time until CIFAR-10
# is in DATA_DIR, so that it is downloaded once; if the download fails, the others are not started.
#
# On a cluster: PRINT=1 prints one self-contained command per run and runs nothing (put CIFAR-10 in DATA_DIR
# first, so that the runs do not all download it at once); tools/tables.py gathers whatever has finished:
#   PRINT=1 DATA_DIR=/shared/cifar10 OUT_DIR=/shared/raft bash run_all.sh > commands.txt
#   sbatch --array=1-$(wc -l < commands.txt) --gres=gpu:1 --wrap 'bash -c "$(sed -n ${SLURM_ARRAY_TASK_ID}p commands.txt)"'
#   python tools/tables.py /shared/raft
# A smoke run of the whole script on a CPU (every run, tiny settings; the accuracies mean nothing):
#   EPOCHS=1 TRAIN_SUBSET=500 SEEDS=1 DATA_DIR=data/cifar10 OUT_DIR=/tmp/smoke \
#     ARGS="--encoder small --image-size 16 --eval-epochs 5 --knn-every 0" bash run_all.sh
set -uo pipefail
error() { echo "run_all.sh: error: $*" >&2; exit 2; }

[ -n "${SEEDS:-}" ] && [ -n "${SEED_LIST:-}" ] && error "give SEEDS (a count) or SEED_LIST (the seeds), not both"
[ "${QUICK:-0}" = 1 ] && PROFILE=${PROFILE:-quick}
PROFILE=${PROFILE:-paper}
case "$PROFILE" in
  paper) EPOCHS=${EPOCHS:-300}; SEEDS=${SEEDS:-3}; JOBS=${JOBS:-1}; OUT_DIR=${OUT_DIR:-results/paper}; THREADS=${THREADS:-}
         TRAIN_SUBSET=${TRAIN_SUBSET:-0}; SETUP=""; FIGURE4_KNN=0 ;;
  quick) EPOCHS=${EPOCHS:-10}; SEEDS=${SEEDS:-1}; JOBS=${JOBS:-4}; OUT_DIR=${OUT_DIR:-results/quick}; THREADS=${THREADS:-}
         TRAIN_SUBSET=${TRAIN_SUBSET:-0}; SETUP="--image-size 64 --eval-epochs 20 --knn-every 2"; FIGURE4_KNN=0 ;;
  # the CPU profile: results/cpu/README.md says why each departure still tests the claims
  cpu)   EPOCHS=${EPOCHS:-7}; SEEDS=${SEEDS:-2}; JOBS=${JOBS:-2}; OUT_DIR=${OUT_DIR:-results/cpu}; THREADS=${THREADS:-1}
         TRAIN_SUBSET=${TRAIN_SUBSET:-2560}; FIGURE4_KNN=${FIGURE4_KNN:-1}  # kNN every N epochs on Figure 4's runs (panel c)
         SETUP="--encoder small --image-size 32 --batch-size 64 --probe features --knn-every 0 --device cpu" ;;
  # five minutes on a 2-core CPU: Sec. 3's collapse; results/demo/README.md says how the scale was measured
  demo)  EPOCHS=${EPOCHS:-10}; SEEDS=${SEEDS:-1}; JOBS=${JOBS:-3}; OUT_DIR=${OUT_DIR:-results/demo}; THREADS=${THREADS:-1}
         TRAIN_SUBSET=${TRAIN_SUBSET:-2560}; FIGURE4_KNN=0; RUNS=${RUNS:-byol-mlp,byol-np,raft-np}
         SETUP="--encoder small --image-size 16 --batch-size 64 --probe features --knn-every 0"
         SETUP+=" --device cpu" ;;
  *) error "PROFILE must be paper, quick, cpu or demo, not '$PROFILE'" ;;
esac
[[ "$JOBS" =~ ^[1-9][0-9]*$ ]] || error "JOBS must be a whole number >= 1"
[[ "$FIGURE4_KNN" =~ ^(0|[1-9][0-9]*)$ ]] || error "FIGURE4_KNN must be a whole number >= 0, not '$FIGURE4_KNN'"
[[ "${THREADS:-}" =~ ^([1-9][0-9]*)?$ ]] ||
  error "THREADS must be a whole number >= 1 (or empty: torch's default), not '$THREADS'"
[[ "${GPUS:-}" =~ ^([0-9]+(,[0-9]+)*)?$ ]] ||
  error "GPUS must be CUDA device numbers separated by commas, e.g. 0,1 (or empty: no GPU), not '$GPUS'"
if [ -n "${SEED_LIST:-}" ]; then
  [[ "$SEED_LIST" =~ ^(0|[1-9][0-9]*)(,(0|[1-9][0-9]*))*$ ]] ||
    error "SEED_LIST must be seeds separated by commas, e.g. 0,2, not '$SEED_LIST'"
  IFS=, read -r -a seeds <<< "$SEED_LIST"
else
  [[ "$SEEDS" =~ ^[1-9][0-9]*$ ]] ||
    error "SEEDS must be a count >= 1 (seeds 0..SEEDS-1), not '$SEEDS'; for chosen seeds give SEED_LIST, e.g. 0,2"
  seeds=(); for ((seed = 0; seed < SEEDS; seed++)); do seeds+=("$seed"); done
fi
DATA_DIR=$(realpath -m "${DATA_DIR:-data}") || exit 2  # paths as the user meant them, before the cd below
OUT_DIR=$(realpath -m "$OUT_DIR")
SHOWN=$OUT_DIR DATA_SHOWN=$DATA_DIR  # the paths as the user gave them, whatever the runs' own paths
ARGS=${ARGS:-}
PYTHON=${PYTHON:-python}
GPUS=${GPUS:-}
RUNS=${RUNS:-}
PRINT=${PRINT:-0}
SNAPSHOTS=${SNAPSHOTS:-}
cd "$(dirname "$0")"
RAFT=$(pwd)/raft.py
TABLES=$(pwd)/tools/tables.py
if [ "$PRINT" != 1 ]; then  # runs here: paths relative to the repository, so results and logs hold no absolute path
  RAFT=raft.py DATA_DIR=$(realpath -m --relative-to=. "$DATA_DIR") OUT_DIR=$(realpath -m --relative-to=. "$OUT_DIR")
  usable=$SHOWN  # OUT_DIR, or the part of its path that exists: a folder this user may write in, before any run
  while [ ! -e "$usable" ]; do usable=$(dirname "$usable"); done
  if [ ! -d "$usable" ]; then
    [ "$usable" = "$SHOWN" ] && error "OUT_DIR $SHOWN is a file, not a folder"
    error "OUT_DIR $SHOWN: $usable is a file, not a folder"
  fi
  [ -w "$usable" ] || error "OUT_DIR $SHOWN: $usable is not writable"
fi

# every run as one line: NAME SEED FLAGS...
runs=$($PYTHON "$TABLES" --list-runs --epochs "$EPOCHS" ${SNAPSHOTS:+--snapshot-epochs "$SNAPSHOTS"} \
       --figure4-knn-every "$FIGURE4_KNN") || exit 1
queue=()
while IFS=$'\t' read -r name flags; do
  if [ -n "$RUNS" ] && [[ ",$RUNS," != *",$name,"* ]]; then continue; fi
  declare -A seen=()
  for seed in "${seeds[@]}"; do  # each seed once, in the order given
    [ -n "${seen[$seed]:-}" ] || queue+=("$name $seed $flags"); seen[$seed]=1
  done
  unset seen
done <<< "$runs"
[ ${#queue[@]} -gt 0 ] || error "no run matches RUNS='$RUNS' (python tools/tables.py --list-runs)"

command_for() {  # the self-contained command of one queue entry; the run's own flags last, so that e.g. --epochs 0 wins
  local name=$1 seed=$2; shift 2
  local argv=("$RAFT" --data-dir "$DATA_DIR" --epochs "$EPOCHS" --train-subset "$TRAIN_SUBSET" $SETUP $ARGS
              --seed "$seed" --out "$OUT_DIR/$name-s$seed.json" --resume "$@")
  printf '%s' "${THREADS:+OMP_NUM_THREADS=$THREADS }$PYTHON"
  printf ' %q' "${argv[@]}"
  echo
}

if [ "$PRINT" = 1 ]; then
  for entry in "${queue[@]}"; do command_for $entry; done
  exit 0
fi

mkdir -p "$OUT_DIR/logs" 2> /dev/null || error "OUT_DIR $SHOWN: cannot make $SHOWN/logs"
failed="$OUT_DIR/failed.txt"
: > "$failed"

said() {  # said LOG: the run's last line in this script's words: DATA_DIR as given, knobs for raft.py's flags
  local line
  line=$(tail -n 1 "$1")
  line=${line//"'$DATA_DIR'"/"'$DATA_SHOWN'"}
  sed 's/--data-dir/DATA_DIR/g; s/--train-subset/TRAIN_SUBSET/g; s/--epochs/EPOCHS/g' <<< "$line"
}

run() {  # run GPU NAME SEED FLAGS...: the run, its output appended to its log under a dated line
  local gpu=$1 name=$2 seed=$3 command
  local log="$OUT_DIR/logs/$name-s$seed.log"
  command=$(command_for "${@:2}")
  echo "run      $name seed $seed${gpu:+ on GPU $gpu} (log: $log)"
  echo "==== $(date -u '+%Y-%m-%d %H:%M:%S UTC') run_all.sh: $command" >> "$log"
  if ! env ${gpu:+CUDA_VISIBLE_DEVICES=$gpu} bash -c "$command" >> "$log" 2>&1; then
    echo "$name seed $seed: $(said "$log")" >> "$failed"
    echo "FAILED   $name seed $seed (see $log)"
  fi
}

IFS=, read -r -a gpus <<< "$GPUS"
workers=$(( JOBS * (${#gpus[@]} > 0 ? ${#gpus[@]} : 1) ))
worker() {  # worker W runs queue entries W, W + workers, ... one after another, so entry I runs on GPU I mod #GPUs
  local w=$1 gpu=""
  [ ${#gpus[@]} -gt 0 ] && gpu=${gpus[$((w % ${#gpus[@]}))]}
  for ((i = w; i < ${#queue[@]}; i += workers)); do
    [ "$i" -ge "$alone" ] && run "$gpu" ${queue[$i]}
  done
}
has_data() { [ -d "$DATA_DIR/train" ] || [ -d "$DATA_DIR/test" ] || [ -d "$DATA_DIR/cifar-10-batches-py" ]; }
alone=0  # runs one at a time until CIFAR-10 is here (raft.py downloads it), so that it is downloaded once
while [ "$alone" -lt ${#queue[@]} ] && ! has_data; do
  run "${gpus[0]:-}" ${queue[$alone]}
  read -r name seed _ <<< "${queue[$alone]}"
  alone=$((alone + 1))
  log="$OUT_DIR/logs/$name-s$seed.log"
  if [[ $(tail -n 1 "$log") == *"no CIFAR-10 in"* ]]; then  # the others would try the download again, and fail
    echo "run_all.sh: error: $(said "$log" | sed 's/^raft\.py: error: //'); the other $((${#queue[@]} - alone)) runs" \
         "were not started" >&2
    exit 1
  fi
done
for ((w = 0; w < workers; w++)); do worker "$w" & done
wait

finished=$((${#queue[@]} - $(wc -l < "$failed"))) tables_failed=""
if [ "$finished" = 0 ]; then  # no results of these settings to make tables of: the folder stays as it was
  echo "tables: not written, no run finished (what $SHOWN holds is as it was)"
elif [ "$PROFILE" = demo ]; then  # the demo's figure and table (printed)
  $PYTHON "$(dirname "$TABLES")/demo.py" "$OUT_DIR" || tables_failed="drawing the demo's figure and table failed"
elif $PYTHON "$TABLES" "$OUT_DIR" > /dev/null; then
  echo "tables: $SHOWN/table1.md $SHOWN/table3.md $SHOWN/mirror.md"
else
  tables_failed="writing the tables failed"
fi
if [ -s "$failed" ]; then
  echo "failed runs ($(wc -l < "$failed")):"
  cat "$failed"
fi
[ -z "$tables_failed" ] || echo "$tables_failed"
if [ -s "$failed" ] || [ -n "$tables_failed" ]; then exit 1; fi
