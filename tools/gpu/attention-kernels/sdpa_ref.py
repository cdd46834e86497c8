# PyTorch's scaled_dot_product_attention (what transformers' "sdpa" attention calls) at one causal bf16 shape, each
# backend: forward and backward time. Usage: python3 sdpa_ref.py [B T Hq Hkv D]   (default: an 8B layer, 2 2048 32 8 128)
import sys
import torch, torch.nn.functional as F
from torch.nn.attention import sdpa_kernel, SDPBackend
B, T, H, Hkv, D = (int(x) for x in sys.argv[1:6]) if len(sys.argv) > 5 else (2, 2048, 32, 8, 128)
fl = 4.0 * B * H * T * T * D / 2
torch.manual_seed(0)
q = torch.randn(B, H, T, D, device='cuda', dtype=torch.bfloat16, requires_grad=True)
k = torch.randn(B, Hkv, T, D, device='cuda', dtype=torch.bfloat16, requires_grad=True)
v = torch.randn(B, Hkv, T, D, device='cuda', dtype=torch.bfloat16, requires_grad=True)
g = torch.randn(B, H, T, D, device='cuda', dtype=torch.bfloat16)
def timed(f, n=20):
    for _ in range(3): f()
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    for _ in range(n): f()
    b.record(); torch.cuda.synchronize()
    return a.elapsed_time(b) / n
for name, backends in [("default", None), ("flash", [SDPBackend.FLASH_ATTENTION]), ("cudnn", [SDPBackend.CUDNN_ATTENTION]), ("efficient", [SDPBackend.EFFICIENT_ATTENTION])]:
    for gqa in (True, False):
        try:
            def run(bwd):
                kk, vv = (k, v) if gqa else (k.repeat_interleave(H // Hkv, 1), v.repeat_interleave(H // Hkv, 1))
                def f():
                    o = F.scaled_dot_product_attention(q, kk, vv, is_causal=True, enable_gqa=gqa)
                    if bwd: o.backward(g)
                    return o
                if backends is None: return timed(f)
                with sdpa_kernel(backends): return timed(f)
            tf = run(False); tfb = run(True)
            print(f"sdpa {name:9s} gqa={gqa!s:5s}: fwd {tf:.4f} ms ({fl/tf/1e9:.1f} TFLOP/s)  bwd {tfb-tf:.4f} ms ({2.5*fl/(tfb-tf)/1e9:.1f} TFLOP/s, 5 products)")
        except Exception as e:
            print(f"sdpa {name} gqa={gqa}: {type(e).__name__}: {str(e)[:120]}")
