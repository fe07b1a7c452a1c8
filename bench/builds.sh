#!/bin/sh
# Times every flua build in dist/ (dist/flua and the dist/flua_NAME of
# scripts/dist_builds.sh) with the same bench/bench.lua arguments, one
# after the other, and prints their rows as one table, a build a column
# of TFLOP/s:
#   sh bench/builds.sh --variants full,causal --shapes "4,16,4096,128" --iters 30
# Each build's whole output goes to $OUT/bench_<build>.log when OUT is set;
# DIST names another folder of builds; BUILD_TIMEOUT (seconds, default
# 240) stops a build that hangs, keeping what it printed.
out=${OUT:-/tmp}
dist=${DIST:-dist}
names="" failed=0
for f in "$dist"/flua "$dist"/flua_*; do
  [ -x "$f" ] || continue
  name=${f#"$dist"/}
  timeout "${BUILD_TIMEOUT:-240}" "$f" bench/bench.lua "$@" > "$out/bench_$name.log" 2>&1 ||
    { echo "builds: $name failed or timed out (see $out/bench_$name.log)" >&2; failed=1; }
  names="$names $name"
done
[ -n "$names" ] || { echo "builds: no flua in $dist/ (make dist, make dist-builds)" >&2; exit 2; }
python3 - "$out" $names <<'PY'
import sys
out, names = sys.argv[1], sys.argv[2:]
rows, order = {}, []
for n in names:
    for line in open(f"{out}/bench_{n}.log", errors="replace"):
        c = [x.strip() for x in line.strip().strip("|").split("|")]
        if len(c) < 4 or not c[0] or c[0] in ("variant",) or c[0].startswith("-"):
            continue
        key = (c[0], c[1])
        if key not in rows: rows[key] = {}; order.append(key)
        rows[key][n] = c[3]
print("| variant | B,H,N,D | " + " | ".join(names) + " |")
print("|---|---|" + "---:|" * len(names))
for k in order:
    print(f"| {k[0]} | {k[1]} | " + " | ".join(rows[k].get(n, "–") for n in names) + " |")
PY
exit $failed
