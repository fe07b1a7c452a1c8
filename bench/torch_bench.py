"""FlexAttention and SDPA (cuDNN/FlashAttention) on the shape bench/bench.lua
times, bf16, CUDA events, median of 20 calls after warm-up:
    python3 bench/torch_bench.py B H N D"""
import sys
import torch
from torch.nn.attention.flex_attention import flex_attention, create_block_mask
import torch.nn.functional as F

B, H, N, D = (int(x) for x in sys.argv[1:5])
q, k, v = (torch.randn(B, H, N, D, device="cuda", dtype=torch.bfloat16) for _ in range(3))
flex = torch.compile(flex_attention)


def causal(b, h, qi, kj):
    return qi >= kj


def timed(fn):
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
    return ts[len(ts) // 2]


mask = create_block_mask(causal, B, H, N, N)
rows = [
    ("full", "FlexAttention", lambda: flex(q, k, v), 1.0),
    ("full", "SDPA", lambda: F.scaled_dot_product_attention(q, k, v), 1.0),
    ("causal", "FlexAttention", lambda: flex(q, k, v, block_mask=mask), 0.5),
    ("causal", "SDPA", lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True), 0.5),
]
print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, B={B} H={H} N={N} D={D} bf16")
print(f"{'variant':<18} {'impl':<14} {'ms':>9} {'TFLOP/s':>9}")
for name, impl, fn, kept in rows:
    ms = timed(fn)
    print(f"{name:<18} {impl:<14} {ms:9.3f} {4 * B * H * N * N * D * kept / ms / 1e9:9.1f}")
