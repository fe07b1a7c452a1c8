"""Flashlight beside PyTorch on the same inputs, on a GPU machine with PyTorch:

    python3 bench/compare.py [--variants a,b] [--shapes anchors|B,H,N,D;...] [--flua dist/flua]
                             [--out DIR] [--iters 50]

1. Runs `flua bench/bench.lua` for the variants and shapes (default: the
   benchmark's ten variants at the four shapes of ../shared/ANCHORS.md),
   saving each case's inputs and outputs as .npy and its timings as JSON.
2. Loads those same inputs into PyTorch and runs, where each applies:
   FlexAttention (with its block mask), SDPA (default dispatch, cuDNN,
   FlashAttention-2), the best PyTorch way for what FlexAttention cannot
   hold (two SDPA calls for differential, SDPA with the bias for Evoformer)
   and torch.compile of the plain math. Each is timed with
   triton.testing.do_bench (median) and its output checked against
   Flashlight's: relative error max|a − b| / max|b| (f32).
3. Prints one markdown table (Flashlight's TFLOP/s ÷ each baseline's) and
   writes DIR/compare.json, DIR/compare.md and DIR/compare.svg (bench/plot.py).

TFLOP/s counts 4·B·H·N²·D per attention times the kept fraction (from
bench.lua, the same for every implementation), two attentions for
differential. An implementation that fails gets an error row; the run goes on.
"""
import argparse
import glob
import json
import math
import os
import subprocess
import sys
import time
import traceback

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import plot  # noqa: E402
from torch_bench import CAP, LAMBDA, PREFIX, WINDOW, bench_ms, first_call_ms  # noqa: E402

DEFAULT_VARIANTS = ("full,causal,softcap,alibi,sliding_window,prefix_lm,document,"
                    "differential,evoformer_row,sigmoid")
ANCHOR_SHAPES = "8,16,1024,64;4,16,4096,64;4,16,4096,128;1,16,16384,128"


def log(*a):
    print(*a, flush=True)


def load_inputs(case_dir, dt):
    """The case's inputs by name (in<k>_<name>.npy), on the GPU: floats as dt (bf16 comes as
    its bits, <u2), ids as int32."""
    x = {}
    for path in sorted(glob.glob(os.path.join(case_dir, "in*_*.npy"))):
        name = os.path.basename(path)[:-4].split("_", 1)[1]
        a = np.load(path)
        if a.dtype == np.uint16:
            t = torch.from_numpy(a.view(np.int16)).cuda().view(torch.bfloat16)
        else:
            t = torch.from_numpy(a).cuda()
        x[name] = t.to(dt) if t.is_floating_point() else t.to(torch.int32)
    return x


class Torch:
    """PyTorch's ways for one case's inputs: impls(name) -> [(impl, fn)]."""

    def __init__(self, x, N, D):
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
        try:
            from torch.nn.attention import SDPBackend, sdpa_kernel
        except Exception:
            SDPBackend = sdpa_kernel = None
        self.x, self.N, self.D = x, N, D
        self.flex = torch.compile(flex_attention, dynamic=False)
        self.block_mask = lambda fn: create_block_mask(fn, None, None, N, N, device="cuda")
        self.SDPBackend, self.sdpa_kernel = SDPBackend, sdpa_kernel

    def sdpa_all(self, q, k, v, **kw):
        def run(backend):
            def fn():
                if backend is None:
                    return F.scaled_dot_product_attention(q, k, v, **kw)
                with self.sdpa_kernel([backend]):
                    return F.scaled_dot_product_attention(q, k, v, **kw)
            return fn
        rows = [("SDPA", run(None))]
        if self.SDPBackend is not None:
            rows += [("SDPA cuDNN", run(self.SDPBackend.CUDNN_ATTENTION)),
                     ("SDPA FlashAttention-2", run(self.SDPBackend.FLASH_ATTENTION))]
        return rows

    def math(self, q, k, v, mod=None, keep=None, weight="softmax"):
        """torch.compile of the plain math: scores, mod, mask, softmax (or sigmoid), · v."""
        scale, N = 1.0 / math.sqrt(self.D), self.N

        @torch.compile(dynamic=False)
        def attn(q, k, v):
            s = (q @ k.transpose(-2, -1)).float() * scale
            if mod is not None:
                s = mod(s)
            if keep is not None:
                i = torch.arange(N, device=s.device)
                s = s.masked_fill(~keep(i[:, None], i[None, :]), float("-inf"))
            p = torch.softmax(s, -1) if weight == "softmax" else torch.sigmoid(s)
            return (p.to(v.dtype) @ v)
        return ("torch.compile (math)", lambda: attn(q, k, v))

    def impls(self, name):
        x, flex, mask = self.x, self.flex, self.block_mask
        q, k, v = x.get("q"), x.get("k"), x.get("v")

        def causal(b, h, qi, kj):
            return qi >= kj
        if name == "full":
            return [("FlexAttention", lambda: flex(q, k, v))] + self.sdpa_all(q, k, v) + [self.math(q, k, v)]
        if name == "causal":
            m = mask(causal)
            return ([("FlexAttention", lambda: flex(q, k, v, block_mask=m))] + self.sdpa_all(q, k, v, is_causal=True)
                    + [self.math(q, k, v, keep=lambda i, j: i >= j)])
        if name == "softcap":
            def softcap(score, b, h, qi, kj):
                return CAP * torch.tanh(score / CAP)
            return [("FlexAttention", lambda: flex(q, k, v, score_mod=softcap)),
                    self.math(q, k, v, mod=lambda s: CAP * torch.tanh(s / CAP))]
        if name == "alibi":
            slope = x["slope"].float()

            def alibi(score, b, h, qi, kj):
                return score + slope[h] * (kj - qi)
            m = mask(causal)
            i = torch.arange(self.N, device="cuda")
            rel = (i[None, :] - i[:, None]).float()
            bias = (slope[:, None, None] * rel).masked_fill(rel > 0, float("-inf")).to(q.dtype)[None]
            return [("FlexAttention", lambda: flex(q, k, v, score_mod=alibi, block_mask=m)),
                    ("SDPA (bias as attn_mask)", lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=bias)),
                    self.math(q, k, v, mod=lambda s: s + bias.float(), keep=lambda i, j: i >= j)]
        if name == "sliding_window":
            def sliding(b, h, qi, kj):
                return (qi >= kj) & (qi - kj < WINDOW)
            m = mask(sliding)
            return [("FlexAttention", lambda: flex(q, k, v, block_mask=m)),
                    self.math(q, k, v, keep=lambda i, j: (i >= j) & (i - j < WINDOW))]
        if name == "prefix_lm":
            def prefix(b, h, qi, kj):
                return (qi >= kj) | (kj < PREFIX)
            m = mask(prefix)
            return [("FlexAttention", lambda: flex(q, k, v, block_mask=m)),
                    self.math(q, k, v, keep=lambda i, j: (i >= j) | (j < PREFIX))]
        if name == "document":
            doc = x["doc"].long()

            def document(b, h, qi, kj):
                return (doc[qi] == doc[kj]) & (qi >= kj)
            m = mask(document)
            return [("FlexAttention", lambda: flex(q, k, v, block_mask=m)),
                    self.math(q, k, v, keep=lambda i, j: (doc[i] == doc[j]) & (i >= j))]
        if name == "differential":
            q1, k1, q2, k2 = x["q1"], x["k1"], x["q2"], x["k2"]
            sdpa = F.scaled_dot_product_attention
            return [("two SDPA calls", lambda: sdpa(q1, k1, v) - LAMBDA * sdpa(q2, k2, v)),
                    ("two FlexAttention calls", lambda: flex(q1, k1, v) - LAMBDA * flex(q2, k2, v))]
        if name == "evoformer_row":
            bias, gate = x["bias"], x["gate"]

            def pair_bias(score, b, h, qi, kj):
                return score + bias[b, h, qi, kj]
            ways = [("SDPA (bias as attn_mask) + gate",
                     lambda: torch.sigmoid(gate) * F.scaled_dot_product_attention(q, k, v, attn_mask=bias))]
            # Past 2^31 elements (B1 H16 N16384) FlexAttention's kernel reads the
            # captured bias out of bounds (illegal address, PyTorch 2.11), which
            # ends the process's CUDA context and every case after it.
            if bias.numel() < 2 ** 31:
                ways.append(("FlexAttention (captured bias) + gate",
                             lambda: torch.sigmoid(gate) * flex(q, k, v, score_mod=pair_bias)))
            return ways
        if name == "sigmoid":
            shift = math.log(self.N)
            return [self.math(q, k, v, mod=lambda s: s - shift, weight="sigmoid")]
        return []


def rel_error(got, want):
    got, want = got.float(), want.float()
    return float((got - want).abs().max() / want.abs().max().clamp_min(1e-30))


def main():
    ap = argparse.ArgumentParser(description="Flashlight beside PyTorch on the same inputs")
    ap.add_argument("--variants", default=os.environ.get("FL_BENCH_VARIANTS", DEFAULT_VARIANTS))
    ap.add_argument("--shapes", default="anchors")
    ap.add_argument("--flua", default="dist/flua")
    ap.add_argument("--out", default="bench/out")
    ap.add_argument("--iters", default="50")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "f16"])
    a = ap.parse_args()
    shapes = ANCHOR_SHAPES if a.shapes == "anchors" else a.shapes
    os.makedirs(a.out, exist_ok=True)
    fl_json = os.path.join(a.out, "flashlight.json")
    cmd = [a.flua, os.path.join(HERE, "bench.lua"), "--variants", a.variants, "--shapes", shapes,
           "--dtype", a.dtype, "--iters", a.iters, "--json", fl_json,
           "--save-inputs", os.path.join(a.out, "in"), "--save-outputs", os.path.join(a.out, "out")]
    log("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True)
    with open(fl_json) as f:
        ours = json.load(f)
    dt = torch.bfloat16 if a.dtype == "bf16" else torch.float16
    rows, md = [], ["| variant | B,H,N,D | implementation | ms | TFLOP/s | Flashlight ÷ it | rel. error vs Flashlight |",
                    "|---|---|---|---:|---:|---:|---:|"]
    for r in ours["results"]:
        name, shape = r["variant"], r["shape"]
        B, H, N, D = shape
        label = ",".join(str(s) for s in shape)
        if r.get("error"):
            md.append(f"| {name} | {label} | Flashlight | error: {r['error'][:200]} | | | |")
            continue
        rows.append(dict(r, impl="Flashlight"))
        md.append(f"| {name} | {label} | Flashlight | {r['ms']:.3f} | {r['tflops']:.1f} | 1.00 | – |")
        sub = f"{B}x{H}x{N}x{D}"
        # Each case compiles afresh: past torch.compile's recompile limit
        # (8 shapes or masks a function) it would fall back to eager code.
        torch._dynamo.reset()
        try:
            x = load_inputs(os.path.join(a.out, "in", name, sub), dt)
            want = torch.from_numpy(np.load(os.path.join(a.out, "out", name, sub, "out1.npy"))).cuda()
            impls = Torch(x, N, D).impls(name)
        except Exception as e:
            md.append(f"| {name} | {label} | (set-up) | error: {type(e).__name__}: {str(e)[:200]} | | | |")
            traceback.print_exc(file=sys.stderr)
            continue
        flops = 4 * B * H * N * N * D * r["kept"] * (2 if name == "differential" else 1)
        for impl, fn in impls:
            try:
                first = first_call_ms(fn)
                err = rel_error(fn(), want)
                ms = bench_ms(fn)
                tf = flops / ms / 1e9
                rows.append({"variant": name, "shape": shape, "impl": impl, "ms": ms, "tflops": tf,
                             "first_call_ms": first, "rel_error": err, "kept": r["kept"]})
                md.append(f"| {name} | {label} | {impl} | {ms:.3f} | {tf:.1f} | {r['tflops'] / tf:.2f} | {err:.1e} |")
            except Exception as e:
                md.append(f"| {name} | {label} | {impl} | error: {type(e).__name__}: {str(e)[:200]} | | | |")
                traceback.print_exc(file=sys.stderr)
            log(md[-1])
        x = impls = want = None
        torch.cuda.empty_cache()
    header = (f"Flashlight beside PyTorch {torch.__version__} on {torch.cuda.get_device_name()}, {a.dtype}, "
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; Flashlight: CUDA events around its "
              "kernels, median; PyTorch: triton.testing.do_bench median.")
    text = header + "\n\n" + "\n".join(md) + "\n"
    log("\n" + text)
    with open(os.path.join(a.out, "compare.md"), "w") as f:
        f.write(text)
    with open(os.path.join(a.out, "compare.json"), "w") as f:
        json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "results": rows}, f, indent=1)
    plot.main([os.path.join(a.out, "compare.json"), "-o", os.path.join(a.out, "compare.svg"),
               "--title", f"TFLOP/s, {a.dtype}, {torch.cuda.get_device_name()}"])


if __name__ == "__main__":
    main()
