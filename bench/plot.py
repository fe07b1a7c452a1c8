"""TFLOP/s by variant, as an SVG bar chart, from benchmark JSON files.

    python3 bench/plot.py RESULTS.json [MORE.json ...] -o plot.svg [--title TEXT]

Reads bench/bench.lua's JSON (its rows are "Flashlight") and bench/compare.py's
(rows carry their implementation). One group of bars a variant and shape, one
bar an implementation, each labelled with its TFLOP/s. Standard library only.
"""
import argparse
import json
import sys
from xml.sax.saxutils import escape

COLORS = ["#1f6feb", "#d1242f", "#2da44e", "#bf8700", "#8250df", "#57606a", "#e16f24", "#0a7ea4"]


def rows_of(doc):
    """(group label, implementation, TFLOP/s) for each usable row of one JSON document."""
    out = []
    for r in doc.get("results", []):
        if r.get("error") or r.get("tflops") is None:
            continue
        shape = ",".join(str(s) for s in r.get("shape", []))
        out.append((f"{r['variant']} {shape}".strip(), r.get("impl", "Flashlight"), float(r["tflops"])))
    return out


def svg(rows, title):
    groups, impls = [], []
    for g, i, _ in rows:
        if g not in groups:
            groups.append(g)
        if i not in impls:
            impls.append(i)
    value = {(g, i): t for g, i, t in rows}
    top = max([t for _, _, t in rows] + [1.0])
    bar, gap, left, height, bottom = 14, 18, 60, 320, 120
    group_w = bar * len(impls) + gap
    width = left + group_w * len(groups) + 20
    legend_h = 18 * len(impls) + 10
    total_h = 40 + height + bottom + legend_h
    y0 = 40 + height
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{total_h}" '
           f'font-family="sans-serif" font-size="11">',
           f'<text x="{left}" y="22" font-size="14">{escape(title)}</text>']
    for k in range(6):  # grid and axis labels
        v = top * k / 5
        y = y0 - height * k / 5
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - 10}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{v:.3g}</text>')
    out.append(f'<text x="14" y="{40 + height / 2:.0f}" transform="rotate(-90 14 {40 + height / 2:.0f})" '
               'text-anchor="middle">TFLOP/s</text>')
    for gi, g in enumerate(groups):
        x = left + gi * group_w + gap / 2
        for ii, i in enumerate(impls):
            t = value.get((g, i))
            if t is None:
                continue
            h = height * t / top
            bx = x + ii * bar
            out.append(f'<rect x="{bx:.1f}" y="{y0 - h:.1f}" width="{bar - 2}" height="{h:.1f}" '
                       f'fill="{COLORS[ii % len(COLORS)]}"><title>{escape(i)}: {t:.1f}</title></rect>')
            out.append(f'<text x="{bx + bar / 2 - 1:.1f}" y="{y0 - h - 3:.1f}" font-size="8" '
                       f'text-anchor="middle">{t:.0f}</text>')
        cx = x + bar * len(impls) / 2
        out.append(f'<text x="{cx:.1f}" y="{y0 + 12}" transform="rotate(40 {cx:.1f} {y0 + 12})">'
                   f'{escape(g)}</text>')
    for ii, i in enumerate(impls):
        y = 40 + height + bottom + 18 * ii
        out.append(f'<rect x="{left}" y="{y - 10}" width="12" height="12" fill="{COLORS[ii % len(COLORS)]}"/>')
        out.append(f'<text x="{left + 18}" y="{y}">{escape(i)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description="TFLOP/s by variant as an SVG bar chart")
    ap.add_argument("files", nargs="+")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--title", default="TFLOP/s by variant")
    a = ap.parse_args(argv)
    rows = []
    for path in a.files:
        with open(path) as f:
            rows += rows_of(json.load(f))
    if not rows:
        print(f"plot: no results with TFLOP/s in {', '.join(a.files)}", file=sys.stderr)
        return 1
    with open(a.output, "w") as f:
        f.write(svg(rows, a.title))
    print(f"wrote {a.output} ({len(rows)} bars)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
