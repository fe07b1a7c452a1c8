"""Where a block's time goes, from the global timer stamps of a build with
-DFL_DBG_STAMPS=1 (core/fl_cuda_ws.c; timing only, the stamps' own cost
included):

    make dist-builds BUILDS="stamps=-DFL_DBG_STAMPS=1"
    dist/flua_stamps bench/bench.lua --variants full --shapes 4,16,4096,64 --iters 3 > st.txt
    python3 bench/stamps.py st.txt

Reads the last launch's lines (`ST block wg sm t0 tq t1 t2 t3 steps`, a
computing warpgroup each) and prints, over the warpgroups with rows:
the wait for Q, the first step, the other steps and the last product with
the outputs (median, 10th and 90th percentiles, µs), then each block's
span, the gap on a multiprocessor from one block's end to the next one's
Q, and the multiprocessors' time split into busy, gaps and the tail."""
import collections
import sys


def last_launch(path):
    runs, cur = [], []
    for line in open(path, errors="replace"):
        if not line.startswith("ST "):
            continue
        f = [int(x) for x in line.split()[1:]]
        if f[0] == 0 and f[1] == 0 and cur:
            runs.append(cur)
            cur = []
        cur.append(f)
    if cur:
        runs.append(cur)
    if not runs:
        sys.exit("stamps: no ST lines in %s (a build with -DFL_DBG_STAMPS=1?)" % path)
    return runs[-1]


def spread(xs):
    xs = sorted(xs)
    if not xs:
        return "none"
    n = len(xs)
    return "median %.2f, p10 %.2f, p90 %.2f" % (xs[n // 2] / 1e3, xs[n // 10] / 1e3, xs[9 * n // 10] / 1e3)


def main(path):
    recs = []
    for block, wg, sm, t0, tq, t1, t2, t3, steps in last_launch(path):
        recs.append(dict(block=block, wg=wg, sm=sm, t0=t0, tq=tq, t1=t1, t2=t2, t3=t3,
                         steps=steps & 0x7FFFFFFF, rows=steps >> 31))
    start, end = min(r["t0"] for r in recs), max(r["t3"] for r in recs)
    print("launch: %.1f us, %d warpgroups" % ((end - start) / 1e3, len(recs)))
    busy = [r for r in recs if r["rows"]]
    print("wait for Q          ", spread([r["tq"] - r["t0"] for r in busy]))
    if all(r["t1"] for r in busy):
        print("first step          ", spread([r["t1"] - r["tq"] for r in busy]))
        print("other steps         ", spread([r["t2"] - r["t1"] for r in busy]))
    print("last product, output", spread([r["t3"] - r["t2"] for r in busy]))
    blocks = collections.defaultdict(list)
    for r in recs:
        blocks[r["block"]].append(r)
    spans = []
    for rs in blocks.values():
        spans.append((rs[0]["sm"], min(r["tq"] for r in rs), max(r["t3"] for r in rs),
                      sum(r["rows"] for r in rs), len(rs)))
    print("block (all rows)    ", spread([b[2] - b[1] for b in spans if b[3] == b[4]]))
    print("block (some rows)   ", spread([b[2] - b[1] for b in spans if 0 < b[3] < b[4]]),
          "x %d" % sum(1 for b in spans if 0 < b[3] < b[4]))
    by_sm = collections.defaultdict(list)
    for b in spans:
        by_sm[b[0]].append(b)
    gaps, work, tails = [], 0, 0
    for bs in by_sm.values():
        bs.sort(key=lambda b: b[1])
        gaps += [b[1] - a[2] for a, b in zip(bs, bs[1:])]
        work += sum(b[2] - b[1] for b in bs)
        tails += end - bs[-1][2]
    print("gap, end to next Q  ", spread(gaps))
    total = (end - start) * len(by_sm)
    print("multiprocessors (%d): busy %.1f%%, gaps %.1f%%, tail %.1f%%" %
          (len(by_sm), 100 * work / total, 100 * sum(gaps) / total, 100 * tails / total))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
