#!/bin/sh
# Times every flua build in dist/ (dist/flua and the dist/flua_NAME of
# scripts/dist_builds.sh) with the same bench/bench.lua arguments, one
# after the other, and prints their rows as one table, a build a column
# of TFLOP/s:
#   sh bench/builds.sh --variants full,causal --shapes "4,16,4096,128" --iters 30
# ROUNDS=n (default 1) runs the builds n times, every other round in
# reverse order, and reports each case's median over the rounds: one GPU's
# speed drifts by several percent from one minute to the next (clocks,
# temperature), as much as the changes being compared. Few calls after a
# rest time the cool regime, repeatable to ~0.3% on an H100 (see --rest in
# bench/bench.lua): ROUNDS=2 sh bench/builds.sh ... --iters 9 --rest 2
# Each run's whole output goes to $OUT/bench_<build>[_<round>].log when OUT
# is set; DIST names another folder of builds; BUILD_TIMEOUT (seconds,
# default 240) stops a run that hangs, keeping what it printed.
out=${OUT:-/tmp}
dist=${DIST:-dist}
rounds=${ROUNDS:-1}
names="" failed=0
for f in "$dist"/flua "$dist"/flua_*; do
  [ -x "$f" ] && names="$names ${f#"$dist"/}"
done
[ -n "$names" ] || { echo "builds: no flua in $dist/ (make dist, make dist-builds)" >&2; exit 2; }
reversed=""
for name in $names; do reversed="$name $reversed"; done
r=1
while [ "$r" -le "$rounds" ]; do
  order=$names
  [ $((r % 2)) -eq 0 ] && order=$reversed
  for name in $order; do
    log="$out/bench_$name.log"
    [ "$rounds" -gt 1 ] && log="$out/bench_${name}_$r.log"
    timeout "${BUILD_TIMEOUT:-240}" "$dist/$name" bench/bench.lua "$@" > "$log" 2>&1 ||
      { echo "builds: $name failed or timed out (see $log)" >&2; failed=1; }
  done
  r=$((r + 1))
done
python3 - "$out" "$rounds" $names <<'PY'
import statistics
import sys
out, rounds, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
rows, order = {}, []
for n in names:
    logs = [f"{out}/bench_{n}.log"] if rounds == 1 else [f"{out}/bench_{n}_{r}.log" for r in range(1, rounds + 1)]
    for log in logs:
        for line in open(log, errors="replace"):
            c = [x.strip() for x in line.strip().strip("|").split("|")]
            if len(c) < 4 or not c[0] or c[0] in ("variant",) or c[0].startswith("-"):
                continue
            key = (c[0], c[1])
            if key not in rows: rows[key] = {}; order.append(key)
            rows[key].setdefault(n, []).append(c[3])
def median(xs):
    try:
        return "%.1f" % statistics.median(float(x) for x in xs)
    except ValueError:
        return xs[0]
print("| variant | B,H,N,D | " + " | ".join(names) + " |")
print("|---|---|" + "---:|" * len(names))
for k in order:
    print(f"| {k[0]} | {k[1]} | " + " | ".join(median(rows[k][n]) if n in rows[k] else "–" for n in names) + " |")
PY
exit $failed
