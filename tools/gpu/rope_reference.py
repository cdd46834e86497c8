"""Writes Hugging Face transformers' RoPE inverse frequencies and attention scaling for a few rope types as JSON
(stdout), for RopeTablesReferenceTest. Run where transformers is installed (the GPU machine):
    python3 tools/gpu/rope_reference.py > finetune/src/test/resources/hf-rope/inv_freq.json
Each case gives the config's rope_parameters (transformers 5 form), head_dim, and LlamaRotaryEmbedding's float32
inv_freq (as exact decimal doubles) and attention_scaling."""
import json
import torch
import transformers
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

CASES = [
    dict(head_dim=16, rope_parameters=dict(rope_type="default", rope_theta=10000.0)),
    dict(head_dim=64, rope_parameters=dict(rope_type="linear", rope_theta=10000.0, factor=2.0)),
    dict(head_dim=128, rope_parameters=dict(rope_type="linear", rope_theta=500000.0, factor=4.0)),
    dict(head_dim=96, rope_parameters=dict(rope_type="linear", rope_theta=1000000.0, factor=3.5)),
    dict(head_dim=128, rope_parameters=dict(rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0,
                                             high_freq_factor=4.0, original_max_position_embeddings=8192)),
    # YaRN: the original length from max_position_embeddings; from original_max_position_embeddings (the factor then
    # becomes max / original); mscale pair, beta overrides and no truncation; an explicit attention_factor
    dict(head_dim=64, max_position_embeddings=8192, rope_parameters=dict(rope_type="yarn", rope_theta=10000.0, factor=4.0)),
    dict(head_dim=128, max_position_embeddings=32768, rope_parameters=dict(rope_type="yarn", rope_theta=1000000.0, factor=4.0,
                                                                            original_max_position_embeddings=4096)),
    dict(head_dim=64, max_position_embeddings=16384, rope_parameters=dict(rope_type="yarn", rope_theta=500000.0, factor=8.0,
                                                                           mscale=0.707, mscale_all_dim=1.0, beta_fast=16.0,
                                                                           beta_slow=2.0, truncate=False)),
    dict(head_dim=96, max_position_embeddings=4096, rope_parameters=dict(rope_type="yarn", rope_theta=10000.0, factor=2.5,
                                                                          attention_factor=1.25)),
]

out = dict(transformers=transformers.__version__, torch=torch.__version__, cases=[])
for c in CASES:
    heads = 4
    cfg = LlamaConfig(hidden_size=c["head_dim"] * heads, num_attention_heads=heads, head_dim=c["head_dim"],
                      intermediate_size=64, num_hidden_layers=1, vocab_size=32,
                      max_position_embeddings=c.get("max_position_embeddings", 32768),
                      rope_parameters=dict(c["rope_parameters"]))
    rope = LlamaRotaryEmbedding(config=cfg, device="cpu")
    inv = rope.inv_freq.to(torch.float32)
    out["cases"].append(dict(head_dim=c["head_dim"], max_position_embeddings=c.get("max_position_embeddings", 32768),
                             rope_parameters=c["rope_parameters"],
                             inv_freq=[float(v) for v in inv.tolist()], attention_scaling=float(rope.attention_scaling)))
print(json.dumps(out, indent=1))
