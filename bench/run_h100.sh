#!/usr/bin/env bash
# One benchmark session on the GPU machine, run from the repository root
# (after `make dist` on the build machine, which makes dist/flua):
#
#   bash bench/run_h100.sh
#
# Prints the device, then Flashlight's table (dist/flua bench/bench.lua) and
# PyTorch's (python3 bench/torch_bench.py B H N D: FlexAttention, SDPA) on
# the same shape in the same session, as markdown; with $OUT set it also
# writes the whole to $OUT/bench.md (and each program's stderr, if any, to
# $OUT/bench-*.stderr.txt). Each part has a time limit (FL_BENCH_TIMEOUT_S,
# default 300; TORCH_BENCH_TIMEOUT_S, default 220) so that the whole stays
# under ten minutes; a part that fails or times out is reported and the
# other still runs.
#
# FL_BENCH="B,H,N,D" (default 4,16,4096,128) and FL_BENCH_VARIANTS pass
# through to both programs.
set -u
cd "$(dirname "$0")/.." || exit 1

export FL_BENCH=${FL_BENCH:-4,16,4096,128}
IFS=, read -r B H N D <<<"$FL_BENCH"
# bench.lua saves the document variant's ids here; torch_bench.py masks the same documents.
export FL_BENCH_DOC_IDS=${FL_BENCH_DOC_IDS:-/tmp/flashlight-bench-doc-ids.npy}
rm -f "$FL_BENCH_DOC_IDS"
FL_TIMEOUT=${FL_BENCH_TIMEOUT_S:-300}
TORCH_TIMEOUT=${TORCH_BENCH_TIMEOUT_S:-220}
FLUA=${FLUA:-dist/flua}
PY=${PYTHON:-python3}

tmp=$(mktemp -d)
report=$tmp/bench.md
started=$(date +%s)

# run NAME TIMEOUT COMMAND...: the command's stdout into the report, its
# stderr kept aside; a line on how it ended.
run() {
  local name=$1 limit=$2
  shift 2
  local t0 rc
  t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" 2>"$tmp/bench-$name.stderr.txt"
  rc=$?
  echo
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo "**$name: stopped after its time limit of ${limit} s (exit $rc); the rows above are what it finished.**"
  elif [ "$rc" -ne 0 ]; then
    echo "**$name: exit status $rc.**"
  fi
  echo "($name: $(( $(date +%s) - t0 )) s)"
  if [ -s "$tmp/bench-$name.stderr.txt" ]; then
    echo
    echo "<details><summary>$name stderr (last 30 lines)</summary>"
    echo
    echo '```'
    tail -n 30 "$tmp/bench-$name.stderr.txt"
    echo '```'
    echo
    echo "</details>"
  fi
}

{
  echo "# Flashlight beside FlexAttention and SDPA — $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "Shape B=$B H=$H N=$N D=$D, bf16. Commands, from the repository root:"
  echo
  echo '```'
  echo "bash bench/run_h100.sh"
  echo "FL_BENCH=$FL_BENCH FL_BENCH_DOC_IDS=$FL_BENCH_DOC_IDS $FLUA bench/bench.lua"
  echo "FL_BENCH_DOC_IDS=$FL_BENCH_DOC_IDS $PY bench/torch_bench.py $B $H $N $D"
  echo '```'
  echo
  echo "Repository: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
  echo
  echo "## Device"
  echo
  echo '```'
  nvidia-smi -L 2>&1 || echo "nvidia-smi: not available"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv 2>&1 || true
  "$PY" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, "cuDNN", torch.backends.cudnn.version())' 2>&1 || echo "torch: not importable"
  echo '```'
  echo
  echo "## Flashlight (bench/bench.lua)"
  echo
  if [ -x "$FLUA" ]; then
    run flashlight "$FL_TIMEOUT" "$FLUA" bench/bench.lua
  else
    echo "**$FLUA is missing: run \`make dist\` on the build machine and bring dist/ along.**"
  fi
  echo
  echo "## PyTorch (bench/torch_bench.py)"
  echo
  run torch "$TORCH_TIMEOUT" "$PY" -u bench/torch_bench.py "$B" "$H" "$N" "$D"
  echo
  echo "Total: $(( $(date +%s) - started )) s."
} 2>&1 | tee "$report"

if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT"
  cp "$report" "$OUT/bench.md"
  for f in "$tmp"/bench-*.stderr.txt; do
    [ -s "$f" ] && cp "$f" "$OUT/"
  done
  echo "wrote $OUT/bench.md"
fi
rm -rf "$tmp"
