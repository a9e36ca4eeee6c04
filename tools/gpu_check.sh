#!/usr/bin/env bash
# First contact with a CUDA machine in one command: about 8 minutes in all, every step under its own time limit;
# a step that fails is recorded and the next one runs.
#   1. tools/bench.py: the CUDA graph step checked against the eager one, then the step's speed eager and graphed,
#      the augmentation and both probes (bench.json)
#   2. the graph check alone for every flag set that changes what the graph records (graph-*: the supervised head,
#      blur, solarisation, joint BatchNorm, the tangent variant, ...), a few seconds each, side by side
#   3. tools/bench.py again with --compile (bench-compile.json)
#   4. each GPU-only option for a few steps of a tiny real run (runs/), side by side after the first
#   5. PROFILE=quick bash run_all.sh as far as the time left allows (quick/), then tools/tables.py on what finished
# (The CPU tests are not run: every one pins --device cpu, so a GPU can tell nothing there that CI does not.)
# Everything goes to one folder, to be committed as results/<gpu>-<date>/: one log per step (logs/), the JSON files,
# the tables, environment.txt (GPUs, versions, commit) and summary.txt (each step, its outcome, exit status, wall
# time and command). Weights and checkpoints (*.pt, *.ckpt) are deleted at the end, except figure3.pt.
#
#   bash tools/gpu_check.sh [OUT]                   # OUT default: results/<gpu name>-<date> (a CPU: a /tmp folder)
#   DATA_DIR=data/cifar10 bash tools/gpu_check.sh   # CIFAR-10 from an ImageFolder copy (no download)
#   DRY_RUN=1 bash tools/gpu_check.sh /tmp/check    # check and print every step's command line, run nothing
#
# Knobs (environment): OUT (the folder, if not given as the argument; it must not exist or be empty), DATA_DIR
# (CIFAR-10 as torchvision downloads it, downloaded there when missing, or DIR/{train,test}/<class>/<image>; default
# data), BUDGET (seconds in all; default 470), PYTHON (default python, else python3), COMMIT (the commit to record
# where the copy has no .git), DRY_RUN=1.
# Every raft.py and bench.py command line below is first parsed by raft.py's own parser (step "flags"), so a
# misspelt flag shows on any machine. A run that cannot find CIFAR-10 is a failure, named first in the last line,
# and the later runs that need it are skipped; so is a dry run without CIFAR-10 in DATA_DIR. Without CUDA the script names the steps it skips (the CUDA-only
# ones) and runs the others at CPU size in a few minutes: the benchmark and the tiny runs small with --device cpu
# (not --amp), run_all.sh's commands printed (PRINT=1). Exit status 1 if a step failed.
set -uo pipefail
export PYTHONUNBUFFERED=1  # each log complete up to the moment its step is stopped

PY=${PYTHON:-$(command -v python || command -v python3)}  # a GPU machine may have python3 alone
[ -n "$PY" ] || { echo "gpu_check.sh: error: no python or python3 on PATH; set PYTHON" >&2; exit 2; }
BUDGET=${BUDGET:-470}
DRY_RUN=${DRY_RUN:-0}
DATA_DIR=$(realpath -m "${DATA_DIR:-data}")  # paths as the user meant them, before the cd below
OUT=${1:-${OUT:-}}
[ -z "$OUT" ] || OUT=$(realpath -m "$OUT")
cd "$(dirname "$0")/.." || exit 2
deadline=$((SECONDS + BUDGET))

# the machine: the number of CUDA devices, the first one's name, the versions
{ read -r ngpu gpu; read -r versions; } < <($PY -c 'import sys, torch, torchvision; n = torch.cuda.device_count()
print(n, torch.cuda.get_device_name(0) if n else "cpu")
print("python", sys.version.split()[0], "torch", torch.__version__, "torchvision", torchvision.__version__,
      "CUDA", torch.version.cuda)')
ngpu=${ngpu:-0} gpu=${gpu:-cpu}
slug=$(echo "$gpu" | tr '[:upper:]' '[:lower:]' | sed 's/[^a-z0-9]\+/-/g; s/^-//; s/-$//')
if [ -z "$OUT" ] && [ "$ngpu" -gt 0 ]; then OUT=$(realpath -m "results/$slug-$(date -u +%Y-%m-%d)")
elif [ -z "$OUT" ]; then OUT=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check-cpu.XXXX") || exit 2  # results/ is for GPUs
fi
[ -z "$(ls -A "$OUT" 2> /dev/null)" ] ||
  { echo "gpu_check.sh: error: $OUT already holds files; give another folder (nothing is overwritten)" >&2; exit 2; }
mkdir -p "$OUT/logs" "$OUT/runs" "$OUT/quick" || exit 2
rel() {  # a path inside the repository relative to it, as run_all.sh does: the results hold no path of this machine
  local r; r=$(realpath -m --relative-to=. "$1"); [[ $r == ../* ]] && echo "$1" || echo "$r"
}
DATA_DIR=$(rel "$DATA_DIR") OUT=$(rel "$OUT")
summary=$OUT/summary.txt

{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  commit=${COMMIT:-$(git rev-parse HEAD 2> /dev/null)}
  echo "commit: ${commit:-unknown (no .git here and no COMMIT given)}"; git status --short 2> /dev/null | sed 's/^/  /'
  echo "${versions:-torch not importable by $PY}; $ngpu CUDA devices"
  echo "cpu: $(grep -m 1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(grep -c ^processor /proc/cpuinfo) logical cores"
  command -v nvidia-smi > /dev/null && timeout 30 nvidia-smi
} > "$OUT/environment.txt" 2>&1

declare -A pid started command also_ok
failed=0 nodata=""
has_data() { [ -d "$DATA_DIR/train" ] || [ -d "$DATA_DIR/test" ] || [ -d "$DATA_DIR/cifar-10-batches-py" ]; }
no_data() {  # no_data LINE: is LINE raft.py's one-line error for data it cannot find or read?
  [[ $1 == *"no CIFAR-10 in"* || $1 == *"has no train/"* || $1 == *"has no test/"* || $1 == *"holds no images"* ||
     $1 == *"has no class folders"* || $1 == *"is a file, not a folder"* ]]
}

record() {  # record NAME EXIT SECONDS OUTCOME: one line in the summary and on the screen, the command below it (on
            # the screen too in a dry run)
  local name=$1 status=$2 wall=$3 outcome=$4
  printf '%-22s %5s %8s  %s\n' "$name" "$status" "$wall" "$outcome" | tee -a "$summary"
  if [ "$DRY_RUN" = 1 ]; then printf '%-22s %s\n' "" "${command[$name]}" | tee -a "$summary"
  else printf '%-22s %s\n' "" "${command[$name]}" >> "$summary"
  fi
}

start() {  # start NAME CAP COMMAND...: COMMAND in the background, limited to CAP seconds and the time left
  local name=$1 cap=$2; shift 2
  local limit=$((deadline - SECONDS < cap ? deadline - SECONDS : cap))
  command[$name]=${command[$name]:-$*}
  if [ "$DRY_RUN" = 1 ] && [ "$name" != flags ]; then
    record "$name" - - "dry run"
  elif [ "$limit" -lt 10 ]; then
    record "$name" - - "skipped: no time left"
  else
    started[$name]=$SECONDS
    timeout -k 10 "$limit" "$@" > "$OUT/logs/$name.log" 2>&1 &
    pid[$name]=$!
  fi
}

finish() {  # finish NAME: wait for the step; its outcome: ok, refused (a one-line error, where also_ok allows it),
            # stopped (its time limit; a failure unless also_ok allows it), failed
  local name=$1 status outcome
  [ -n "${pid[$name]:-}" ] || return 0
  wait "${pid[$name]}"; status=$?
  unset "pid[$name]"
  local log=$OUT/logs/$name.log last
  last=$(tail -n 1 "$log" | cut -c 1-200)
  if [ "$status" = 0 ]; then outcome=ok
  elif [ "$status" = 124 ] || [ "$status" = 137 ]; then outcome="stopped at its time limit"
  elif no_data "$last"; then outcome="failed (no data): $last"; nodata=${nodata:-$name}  # never a refusal
  elif [ "${also_ok[$name]:-}" = refused ] && ! grep -q Traceback "$log" && [[ $last == *error:* ]]; then
    outcome="refused: $last"
  else outcome="failed: $last"
  fi
  [ "$outcome" = ok ] || [[ $outcome == "${also_ok[$name]:-ok}"* ]] || failed=$((failed + 1))
  record "$name" "$status" $((SECONDS - started[$name])) "$outcome"
}

step() { start "$@" && finish "$1"; }  # the same, waiting for it
skip() { command[$1]="$3"; record "$1" - - "skipped: $2"; }  # skip NAME WHY COMMAND

clean() { find "$OUT" \( -name '*.pt' -o -name '*.ckpt' \) ! -name figure3.pt -delete; }
stop() {  # Ctrl-C or a kill: stop the running steps (timeout passes the signal on to each step's processes)
  for p in "${pid[@]}"; do kill -TERM "$p" 2> /dev/null; done
  wait
  clean
  echo "stopped by a signal after $SECONDS s" | tee -a "$summary"
  exit 130
}
trap stop INT TERM

if [ "$ngpu" -gt 0 ]; then
  bench=(--out "$OUT/bench.json")  # the paper's setup: ResNet18, 96 px, batch 128
  graph=(--image-size 32 --batch-size 64)  # the graph check alone: small, a few seconds a flag set
  tiny=(--data-dir "$DATA_DIR" --train-subset 1024 --epochs 1 --eval-epochs 1 --image-size 32 --knn-every 0)
else
  bench=(--device cpu --encoder small --image-size 32 --batch-size 32 --train-subset 256 --eval-epochs 1
         --out "$OUT/bench.json")
  tiny=(--device cpu --encoder small --data-dir "$DATA_DIR" --train-subset 64 --batch-size 32 --epochs 1
        --eval-epochs 1 --image-size 32 --knn-every 0)
  graph=(--image-size 32 --batch-size 64)
fi
graphs=(  # NAME FLAGS: every option that changes what the CUDA graph records, checked against the eager step
  "check-supervised --loss supervised"
  "check-blur --blur 0.5"
  "check-solarize --solarize 0.5"
  "check-joint-bn --bn-views joint"
  "check-tangent --tangent --predictor linear"
  "check-authors-jitter --color-jitter authors"
  "check-byol-np --loss byol --predictor none"
  "check-mlp-bn --predictor mlp-bn --mirror-init"
  "check-no-amp --no-amp"
)
runs=(  # NAME FLAGS: a tiny real run for each GPU-only option (its flags after the tiny setup, so they win)
  "amp --amp"  # first and alone: the plain GPU run, and the CIFAR-10 download if DATA_DIR has none
  "no-amp --no-amp"
  "compile --compile"
  "graph-authors-jitter --cuda-graph --color-jitter authors"
  "graph-rand-baseline --cuda-graph --epochs 0"
  "graph-compile --cuda-graph --compile"
  "cuda1 --device cuda:1"
  "cuda1-graph --device cuda:1 --cuda-graph"
)
gpus=$(seq -s, 0 $((ngpu - 1)))  # run_all.sh deals its runs to all of them

{ printf '# tools/gpu_check.sh on %s (%s CUDA devices), %s, budget %s s\n' "$gpu" "$ngpu" \
    "$(date -u '+%Y-%m-%d %H:%M UTC')" "$BUDGET"
  printf '%-22s %5s %8s  %s\n' step exit seconds outcome; } | tee "$summary"

# 0. every command line parsed by raft.py's parser (bench.py takes the same flags)
parse='import raft, shlex, sys
lines, sys.argv[0] = sys.argv[1:], "raft.py"
for line in lines:
    raft.parser().parse_args(shlex.split(line))  # a misspelt flag or value: its one-line error, exit 1
print(len(lines), "command lines parsed")'
lines=("${bench[*]}" "${bench[*]} --compile")
for entry in "${graphs[@]}"; do lines+=("${graph[*]} ${entry#* }"); done  # bench.py's --graph-check aside
for entry in "${runs[@]}"; do lines+=("${tiny[*]} ${entry#* } --out $OUT/runs/${entry%% *}.json"); done
command[flags]="$PY -c <raft.parser().parse_args on each command line below>"
step flags 60 "$PY" -c "$parse" "${lines[@]}"
command[data]="ls $DATA_DIR  # train/ and test/, or cifar-10-batches-py/"
if has_data; then record data - - "ok: CIFAR-10 in $DATA_DIR"
elif [ "$DRY_RUN" = 1 ]; then  # nothing will download it: a failure, as in a real run that cannot
  failed=$((failed + 1)) nodata=data
  record data - - "failed (no data): no CIFAR-10 in $DATA_DIR, and a dry run downloads nothing"
else record data - - "missing: no CIFAR-10 in $DATA_DIR; the first run downloads it (a failure where it cannot)"
fi

# 1. the graph check and the benchmark
step bench 120 "$PY" tools/bench.py "${bench[@]}"  # without CUDA: no graph check

# 2. the graph check for every flag set, side by side (a CUDA device only)
for entry in "${graphs[@]}"; do
  name=${entry%% *} cmd=("$PY" tools/bench.py "${graph[@]}" ${entry#* } --graph-check)
  if [ "$ngpu" -gt 0 ]; then start "$name" 90 "${cmd[@]}"
  else skip "$name" "needs a CUDA device" "${cmd[*]}"
  fi
done
for entry in "${graphs[@]}"; do finish "${entry%% *}"; done

# 3. the benchmark compiled
if [ "$ngpu" -gt 0 ]; then
  step bench-compile 150 "$PY" tools/bench.py "${bench[@]/bench.json/bench-compile.json}" --compile
else
  skip bench-compile "no CUDA device (the compile run below covers --compile)" \
    "$PY tools/bench.py ${bench[*]/bench.json/bench-compile.json} --compile"
fi

# 4. the tiny runs: the first alone, then the others at once on the GPU (one after another on a CPU)
for entry in "${runs[@]}"; do
  name=${entry%% *} flags=${entry#* }
  also_ok[$name]=refused  # a combination refused up front with a one-line error is an answer, not a crash
  cmd=("$PY" raft.py "${tiny[@]}" $flags --out "$OUT/runs/$name.json")
  if [ -n "$nodata" ]; then skip "$name" "no CIFAR-10 (see $nodata)" "${cmd[*]}"
  elif [[ $flags == *cuda:1* ]] && [ "$ngpu" -lt 2 ]; then skip "$name" "needs two CUDA devices" "${cmd[*]}"
  elif [[ $flags == *cuda-graph* ]] && [ "$ngpu" -lt 1 ]; then skip "$name" "needs a CUDA device" "${cmd[*]}"
  elif [ "$flags" = --amp ] && [ "$ngpu" -lt 1 ]; then skip "$name" "bf16 on a CPU: its probe takes minutes" "${cmd[*]}"
  elif [ "$name" = amp ] || [ "$ngpu" -lt 1 ]; then step "$name" 180 "${cmd[@]}"
  else start "$name" 180 "${cmd[@]}"
  fi
done
for entry in "${runs[@]}"; do finish "${entry%% *}"; done

# 5. PROFILE=quick as far as the time left allows (run_all.sh resumes it), 45 s kept for the tables
quick=(env PROFILE=quick DATA_DIR="$DATA_DIR" OUT_DIR="$OUT/quick" PYTHON="$PY")
if [ -n "$nodata" ]; then
  skip quick "no CIFAR-10 (see $nodata)" "${quick[*]} GPUS=$gpus bash run_all.sh"
elif [ "$ngpu" -gt 0 ]; then
  also_ok[quick]=stopped  # its time limit is expected: the tables gather the runs that finished
  step quick $((deadline - SECONDS - 45)) "${quick[@]}" GPUS="$gpus" bash run_all.sh
else
  step quick-printed 30 "${quick[@]}" PRINT=1 bash run_all.sh
fi
step tables 45 "$PY" tools/tables.py "$OUT/quick"

clean
[ "$nodata" = data ] || nodata_log=" (logs/$nodata.log)"  # the run that found no data, where one ran
[ -z "$nodata" ] || data_said="no CIFAR-10 in $DATA_DIR${nodata_log:-}: carry it and set DATA_DIR; "
echo "${data_said:-}$failed failed; ${SECONDS} s in all; summary: $summary" | tee -a "$summary"
[ "$failed" = 0 ]
