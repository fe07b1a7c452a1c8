#!/bin/sh
# On a GPU machine with dist/ (from `make dist`) beside the sources: the core
# tests, the GPU specs, the demo, the randn bit-equality check by hand and the
# tensor-core kernels under compute-sanitizer (memcheck, racecheck, synccheck).
# Logs go to $OUT when set. `gpu_check.sh base` runs all but the persistent
# pass and the chains' sanitizer pass, `gpu_check.sh tiles` and
# `gpu_check.sh chains` only those; base is `specs` (tests, GPU specs, demo,
# randn) then `sanitize` (the three tools), which take about 10 minutes
# together on an H100: one of them a call where a call stops at 10.
out=${OUT:-/tmp}
part=${1:-all}
case $part in all|base|specs|sanitize|tiles|chains) ;;
  *) echo "gpu_check: all, base, specs, sanitize, tiles or chains, got '$part'" >&2; exit 2;; esac
runs() { # does this run do part $1 (specs, sanitize, tiles, chains)?
  [ "$part" = all ] || [ "$part" = "$1" ] || { [ "$part" = base ] && { [ "$1" = specs ] || [ "$1" = sanitize ]; }; }
}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
status=0
if runs specs; then
dist/test_core | tail -1 || status=1
dist/run-specs -o TAP --run=gpu 2>&1 | tee "$out/gpu_specs.log" | grep -vE '^ok ' || true
grep -q '^not ok' "$out/gpu_specs.log" && status=1
echo "gpu specs: $(grep -c '^ok ' "$out/gpu_specs.log") passed, $(grep -c '^not ok' "$out/gpu_specs.log") failed"
dist/flua examples/demo.lua > "$out/demo.log" 2>&1 || status=1
cat "$out/demo.log"
dist/flua -e '
local fl = require "flashlight"
local c = fl.randn({4, 16, 1024, 128}, {dtype = "bf16", seed = 1})
local g = fl.randn({4, 16, 1024, 128}, {dtype = "bf16", seed = 1, device = "cuda"})
c:save("/tmp/c.npy", {raw = true}); g:save("/tmp/g.npy", {raw = true})
local a, b = io.open("/tmp/c.npy", "rb"):read("a"), io.open("/tmp/g.npy", "rb"):read("a")
print(g, "bit-identical to the cpu tensor:", a == b, #a .. " bytes")' || status=1
fi
if runs sanitize; then
# The tensor-core kernels under compute-sanitizer: plain, causal, document and
# differential at N 200 (one warpgroup a block) and 1000 (warp-specialized).
for tool in memcheck racecheck synccheck; do
  FL_SANITIZE_N=200,1000 compute-sanitizer --tool $tool --error-exitcode 1 dist/flua spec/gpu/sanitize.lua \
    > "$out/sanitize_$tool.log" 2>&1 || status=1
  echo "sanitize $tool: $(grep -E '^sanitize:|SUMMARY' "$out/sanitize_$tool.log" | tr '\n' ' ')"
done
fi
if runs chains; then
# Two chains in blocks of their own, combined through a ticket in global
# memory (differential attention): warp-specialized from 2048 keys a row at
# D=64, so N=4096, both head dims, each launched twice (the tickets).
for tool in memcheck racecheck synccheck; do
  FL_SANITIZE_N=4096 FL_SANITIZE_VARIANTS=differential FL_SANITIZE_REPEAT=2 \
    compute-sanitizer --tool $tool --error-exitcode 1 dist/flua spec/gpu/sanitize.lua > "$out/sanitize_chains_$tool.log" 2>&1 || status=1
  echo "sanitize $tool, chains: $(grep -E '^sanitize:|SUMMARY' "$out/sanitize_chains_$tool.log" | tr '\n' ' ')"
done
fi
if runs tiles; then
# Persistent kernels (opts.persistent; three stages), blocks taking several
# tiles each (B4 H16: 512 tiles at N 1000, more than an H100's 132
# multiprocessors; D=64 is warp-specialized from 2048 keys): the GPU specs
# (scalar-kernel reference), and compute-sanitizer at B1 H16 N2048 (256
# tiles at D=128, 176 at D=64).
FL_GPU_PERSISTENT=1 FL_GPU_BH=4,16 FL_GPU_N=1000,2048 \
  FL_GPU_VARIANTS=full,softcap,gqa,differential,evoformer_row,sigmoid,scalable_softmax \
  dist/run-specs -o TAP --run=gpu > "$out/gpu_specs_tiles.log" 2>&1 || status=1
grep -q '^not ok' "$out/gpu_specs_tiles.log" && status=1
echo "gpu specs, several tiles a block: $(grep -c '^ok ' "$out/gpu_specs_tiles.log") passed, $(grep -c '^not ok' "$out/gpu_specs_tiles.log") failed"
for tool in memcheck racecheck synccheck; do
  FL_GPU_PERSISTENT=1 FL_SANITIZE_BH=1,16 FL_SANITIZE_N=2048 FL_SANITIZE_D=64,128 FL_SANITIZE_VARIANTS=full,softcap \
    compute-sanitizer --tool $tool --error-exitcode 1 dist/flua spec/gpu/sanitize.lua > "$out/sanitize_tiles_$tool.log" 2>&1 || status=1
  echo "sanitize $tool, several tiles a block: $(grep -E '^sanitize:|SUMMARY' "$out/sanitize_tiles_$tool.log" | tr '\n' ' ')"
done
fi
case $part in tiles|chains) exit $status;; esac
compute-sanitizer --tool memcheck --leak-check full dist/flua -e '
local fl = require "flashlight"
for i = 1, 3 do local t = fl.randn({256, 256}, {device = "cuda", seed = i}):to("f16"):to("cpu") end
collectgarbage()' 2>&1 | tail -3
exit $status
