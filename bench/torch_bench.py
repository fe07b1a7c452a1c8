"""The PyTorch side of the benchmark: FlexAttention and SDPA on the shape and
variants bench/bench.lua times, bf16.

    python3 bench/torch_bench.py [B H N D [variant,...]]     (default 4 16 4096 128)

Variants (FL_BENCH_VARIANTS or the fifth argument picks; default the list
bench.lua runs), each where PyTorch expresses it:

    full, causal          FlexAttention; SDPA (default dispatch, cuDNN, FlashAttention-2)
    softcap               FlexAttention score_mod 30·tanh(s/30)
    alibi                 FlexAttention score_mod + causal block mask; SDPA with the bias as attn_mask
    sliding_window        FlexAttention mask_mod, window 256, causal
    prefix_lm             FlexAttention mask_mod, prefix 512
    document              FlexAttention mask_mod, causal within documents (the ids bench.lua
                          saved to FL_BENCH_DOC_IDS when that file exists, else 16 random documents)
    differential          two SDPA calls, two FlexAttention calls (λ = 0.3)
    evoformer_row         SDPA with the [B,H,N,N] pair bias as attn_mask, then the sigmoid gate;
                          FlexAttention with the bias captured in score_mod, then the gate
    sigmoid               torch.compile of the math: sigmoid(QKᵀ/√D − log N) V

Timing: triton.testing.do_bench, median (CUDA events; falls back to a CUDA
event loop, median of 20, when triton is missing). "first call ms" is the
wall time of the first call (compile included). TFLOP/s counts the work of all
matrix products as ../shared/ANCHORS.md does: 4·B·H·N²·D per attention times
the fraction of (i, j) pairs the mask keeps, two attentions for differential.
A variant that fails prints an error row and the run goes on.
"""
import math
import os
import sys
import time
import traceback

import torch
import torch.nn.functional as F

DEFAULT_VARIANTS = ("full,causal,softcap,alibi,sliding_window,prefix_lm,document,"
                    "differential,evoformer_row,sigmoid")
CAP, WINDOW, PREFIX, LAMBDA = 30.0, 256, 512, 0.3


def log(*a):
    print(*a, flush=True)


def bench_ms(fn):
    """Median milliseconds a call."""
    try:
        from triton.testing import do_bench
    except Exception:  # no triton: CUDA events
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        ts = []
        for _ in range(20):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            torch.cuda.synchronize()
            ts.append(a.elapsed_time(b))
        ts.sort()
        return (ts[9] + ts[10]) / 2
    try:
        r = do_bench(fn, warmup=25, rep=100, return_mode="median")
    except TypeError:  # older triton: no return_mode
        r = do_bench(fn, warmup=25, rep=100, quantiles=[0.5])
    if isinstance(r, (list, tuple)):
        r = r[0]
    return float(r)


def first_call_ms(fn):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1e3


def read_npy_i32(path):
    """A 1-d little-endian int32 .npy (what bench.lua saves), without numpy."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:6] != b"\x93NUMPY":
        raise ValueError(f"{path}: not a .npy file")
    major = data[6]
    hlen = int.from_bytes(data[8:10], "little") if major == 1 else int.from_bytes(data[8:12], "little")
    start = (10 if major == 1 else 12) + hlen
    header = data[(10 if major == 1 else 12):start].decode("latin1")
    if "'<i4'" not in header:
        raise ValueError(f"{path}: expected int32 ids, header {header.strip()}")
    return torch.frombuffer(bytearray(data[start:]), dtype=torch.int32).clone()


def random_docs(N, gen):
    """Documents of random lengths, as bench.lua draws them: max(3, min(16, N // 128)) of them."""
    ndocs = max(3, min(16, N // 128))
    cuts = torch.randperm(N - 1, generator=gen)[: ndocs - 1] + 1 if N > 1 else torch.zeros(0, dtype=torch.long)
    ids = torch.zeros(N, dtype=torch.int32)
    ids[cuts] = 1
    return torch.cumsum(ids, 0).to(torch.int32)


def doc_kept(ids):
    N = ids.numel()
    runs, run, prev = 0, 0, None
    for x in ids.tolist():
        run = run + 1 if x == prev else 1
        runs += run
        prev = x
    return runs / (N * N)


def main():
    args = sys.argv[1:]
    B, H, N, D = (int(x) for x in args[:4]) if len(args) >= 4 else (4, 16, 4096, 128)
    only = (args[4] if len(args) > 4 else os.environ.get("FL_BENCH_VARIANTS") or DEFAULT_VARIANTS)
    only = [s.strip() for s in only.split(",") if s.strip()]
    dev, dt = "cuda", torch.bfloat16

    from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except Exception:
        SDPBackend = sdpa_kernel = None
    import torch._dynamo as dynamo
    for knob in ("cache_size_limit", "recompile_limit", "accumulated_cache_size_limit",
                 "accumulated_recompile_limit"):
        if hasattr(dynamo.config, knob):
            setattr(dynamo.config, knob, max(256, getattr(dynamo.config, knob)))
    flex = torch.compile(flex_attention, dynamic=False)

    try:
        import triton
        tv = triton.__version__
    except Exception:
        tv = "missing (CUDA-event timing)"
    log(f"PyTorch {torch.__version__} (CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}), "
        f"triton {tv}, {torch.cuda.get_device_name()}, B={B} H={H} N={N} D={D} bf16; "
        "ms = triton.testing.do_bench median; TFLOP/s = 4·B·H·N²·D × kept × attentions / time.")
    log("")
    log("| variant | impl | ms | TFLOP/s | kept | first call ms |")
    log("|---|---|---:|---:|---:|---:|")

    gen = torch.Generator(device=dev)
    gen.manual_seed(1)

    def randn(*shape):
        return torch.randn(*shape, device=dev, dtype=dt, generator=gen)

    q, k, v = randn(B, H, N, D), randn(B, H, N, D), randn(B, H, N, D)
    causal_kept = (N + 1) / (2 * N)

    def causal(b, h, qi, kj):
        return qi >= kj

    def sdpa(backend, **kw):
        def fn():
            if backend is None or sdpa_kernel is None:
                return F.scaled_dot_product_attention(q, k, v, **kw)
            with sdpa_kernel([backend]):
                return F.scaled_dot_product_attention(q, k, v, **kw)
        return fn

    def backends():
        if SDPBackend is None:
            return [("SDPA", None)]
        return [("SDPA", None), ("SDPA cuDNN", SDPBackend.CUDNN_ATTENTION),
                ("SDPA FlashAttention-2", SDPBackend.FLASH_ATTENTION)]

    # Each maker returns [(impl, fn, kept, attentions)]; made lazily, so that
    # one variant's tensors (a 2 GB bias) are gone before the next.
    def v_full():
        rows = [("FlexAttention", lambda: flex(q, k, v), 1.0, 1)]
        rows += [(name, sdpa(b), 1.0, 1) for name, b in backends()]
        return rows

    def v_causal():
        mask = create_block_mask(causal, None, None, N, N, device=dev)
        rows = [("FlexAttention", lambda: flex(q, k, v, block_mask=mask), causal_kept, 1)]
        rows += [(name, sdpa(b, is_causal=True), causal_kept, 1) for name, b in backends()]
        return rows

    def v_softcap():
        def softcap(score, b, h, qi, kj):
            return CAP * torch.tanh(score / CAP)
        return [("FlexAttention", lambda: flex(q, k, v, score_mod=softcap), 1.0, 1)]

    def v_alibi():
        slopes = torch.tensor([2.0 ** (-8 * h / H) for h in range(1, H + 1)], device=dev, dtype=torch.float32)

        def alibi(score, b, h, qi, kj):
            return score + slopes[h] * (kj - qi)
        mask = create_block_mask(causal, None, None, N, N, device=dev)
        i = torch.arange(N, device=dev)
        rel = (i[None, :] - i[:, None]).float()                      # j − i
        bias = (slopes[:, None, None] * rel).masked_fill(rel > 0, float("-inf")).to(dt)[None]  # [1,H,N,N]
        return [("FlexAttention", lambda: flex(q, k, v, score_mod=alibi, block_mask=mask), causal_kept, 1),
                ("SDPA (bias as attn_mask)", lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=bias),
                 causal_kept, 1)]

    def v_sliding_window():
        def sliding(b, h, qi, kj):
            return (qi >= kj) & (qi - kj < WINDOW)
        mask = create_block_mask(sliding, None, None, N, N, device=dev)
        w = min(WINDOW, N)
        kept = (w * N - w * (w - 1) / 2) / (N * N)
        return [("FlexAttention", lambda: flex(q, k, v, block_mask=mask), kept, 1)]

    def v_prefix_lm():
        def prefix(b, h, qi, kj):
            return (qi >= kj) | (kj < PREFIX)
        mask = create_block_mask(prefix, None, None, N, N, device=dev)
        P = min(PREFIX, N)
        kept = (P * P + (N * (N + 1) - P * (P + 1)) / 2) / (N * N)
        return [("FlexAttention", lambda: flex(q, k, v, block_mask=mask), kept, 1)]

    def v_document():
        path = os.environ.get("FL_BENCH_DOC_IDS", "")
        ids, where = None, "16 random documents"
        if path and os.path.exists(path):
            ids = read_npy_i32(path)
            if ids.numel() != N:
                ids = None
            else:
                where = "bench.lua's document ids"
        if ids is None:
            ids = random_docs(N, torch.Generator().manual_seed(1))
            where = f"{len(set(ids.tolist()))} random documents"
        kept = doc_kept(ids)
        doc = ids.to(dev)

        def document(b, h, qi, kj):
            return (doc[qi] == doc[kj]) & (qi >= kj)
        mask = create_block_mask(document, None, None, N, N, device=dev)
        return [(f"FlexAttention ({where})", lambda: flex(q, k, v, block_mask=mask), kept, 1)]

    def v_differential():
        q2, k2 = randn(B, H, N, D), randn(B, H, N, D)

        def two_sdpa():
            return (F.scaled_dot_product_attention(q, k, v)
                    - LAMBDA * F.scaled_dot_product_attention(q2, k2, v))

        def two_flex():
            return flex(q, k, v) - LAMBDA * flex(q2, k2, v)
        return [("two SDPA calls", two_sdpa, 1.0, 2), ("two FlexAttention calls", two_flex, 1.0, 2)]

    def v_evoformer_row():
        bias = randn(B, H, N, N)
        gate = randn(B, H, N, D)

        def sdpa_bias():
            return torch.sigmoid(gate) * F.scaled_dot_product_attention(q, k, v, attn_mask=bias)

        def pair_bias(score, b, h, qi, kj):
            return score + bias[b, h, qi, kj]

        def flex_bias():
            return torch.sigmoid(gate) * flex(q, k, v, score_mod=pair_bias)
        return [("SDPA (bias as attn_mask) + gate", sdpa_bias, 1.0, 1),
                ("FlexAttention (captured bias) + gate", flex_bias, 1.0, 1)]

    def v_sigmoid():
        shift, scale = math.log(N), 1.0 / math.sqrt(D)

        @torch.compile(dynamic=False)
        def sigmoid_attn(q, k, v):
            return torch.sigmoid(q @ k.transpose(-2, -1) * scale - shift) @ v
        return [("torch.compile (math)", lambda: sigmoid_attn(q, k, v), 1.0, 1)]

    makers = {
        "full": v_full, "causal": v_causal, "softcap": v_softcap, "alibi": v_alibi,
        "sliding_window": v_sliding_window, "prefix_lm": v_prefix_lm, "document": v_document,
        "differential": v_differential, "evoformer_row": v_evoformer_row, "sigmoid": v_sigmoid,
    }

    def cell(s):
        return str(s).replace("|", "\\|").replace("\n", " ")

    def error_row(name, impl, e):
        msg = f"{type(e).__name__}: {e}"
        if len(msg) > 300:
            msg = msg[:300] + "…"
        log(f"| {name} | {impl} | error: {cell(msg)} | | | |")
        traceback.print_exc(file=sys.stderr)

    for name in only:
        maker = makers.get(name)
        if maker is None:
            log(f"| {name} | – | not expressed here | | | |")
            continue
        try:
            rows = maker()
        except Exception as e:
            error_row(name, "(setup)", e)
            rows = []
        for impl, fn, kept, attentions in rows:
            try:
                first = first_call_ms(fn)
                ms = bench_ms(fn)
                tflops = 4 * B * H * N * N * D * kept * attentions / ms / 1e9
                log(f"| {name} | {cell(impl)} | {ms:.3f} | {tflops:.1f} | {kept:.3f} | {first:.0f} |")
            except Exception as e:
                error_row(name, cell(impl), e)
        rows = None
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
