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

# Whole config.json files read through AutoConfig.from_pretrained, as a checkpoint directory would be: top-level fields
# that feed the rope parameters, the older rope_scaling form, rope types outside the table above, and llama3 at small,
# irregular sizes (its float32 wavelength arithmetic). Each gives inv_freq and attention_scaling, or the error
# transformers raises; an inv_freq shorter than head_dim / 2 is recorded as an error too (the model cannot run).
import itertools
import os
import random
import tempfile
from transformers import AutoConfig


def base(head_dim, max_pos=32768, **extra):
    heads = 4
    d = dict(model_type="llama", architectures=["LlamaForCausalLM"], hidden_size=head_dim * heads, num_attention_heads=heads,
             num_key_value_heads=heads, head_dim=head_dim, intermediate_size=64, num_hidden_layers=1, vocab_size=32,
             max_position_embeddings=max_pos, rms_norm_eps=1e-6, hidden_act="silu")
    d.update(extra)
    return d


CONFIGS = [
    ("yarn, original length only at the top", base(64, 32768, original_max_position_embeddings=4096,
                                                   rope_parameters=dict(rope_type="yarn", rope_theta=10000.0, factor=8.0))),
    ("llama3, original length only at the top", base(64, 8192, original_max_position_embeddings=1024,
                                                     rope_parameters=dict(rope_type="llama3", rope_theta=500000.0, factor=8.0,
                                                                          low_freq_factor=1.0, high_freq_factor=4.0))),
    ("llama3, original length in both (they differ)", base(64, 8192, original_max_position_embeddings=1024,
                                                           rope_parameters=dict(rope_type="llama3", rope_theta=500000.0, factor=8.0,
                                                                                low_freq_factor=1.0, high_freq_factor=4.0,
                                                                                original_max_position_embeddings=2048))),
    ("llama3, no original length anywhere", base(64, 4096, rope_parameters=dict(rope_type="llama3", rope_theta=500000.0, factor=8.0,
                                                                                 low_freq_factor=1.0, high_freq_factor=4.0))),
    ("older form, linear under type", base(64, 4096, rope_theta=250000.0, rope_scaling=dict(type="linear", factor=2.0))),
    ("older form, llama3", base(128, 131072, rope_theta=500000.0,
                                rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                                  original_max_position_embeddings=8192))),
    ("older form, rope_theta inside rope_scaling", base(64, 4096, rope_theta=10000.0,
                                                        rope_scaling=dict(rope_type="linear", factor=2.0, rope_theta=500000.0))),
    ("partial_rotary_factor 0.5, default", base(64, 4096, partial_rotary_factor=0.5,
                                                rope_parameters=dict(rope_type="default", rope_theta=10000.0))),
    ("partial_rotary_factor 0.5, linear", base(64, 4096, partial_rotary_factor=0.5,
                                               rope_parameters=dict(rope_type="linear", rope_theta=10000.0, factor=2.0))),
    ("dynamic", base(64, 4096, rope_parameters=dict(rope_type="dynamic", rope_theta=10000.0, factor=2.0))),
    ("longrope", base(64, 4096, original_max_position_embeddings=2048,
                      rope_parameters=dict(rope_type="longrope", rope_theta=10000.0, short_factor=[1.0] * 32,
                                           long_factor=[2.0] * 32))),
]
rnd = random.Random(20261201)
for i in range(16):
    hd = rnd.choice([16, 32, 48, 64, 96, 128])
    orig = rnd.choice([64, 256, 1000, 1024, 4096, 8192])
    low = rnd.choice([0.5, 1.0, 2.0])
    high = low + rnd.choice([1.0, 3.0, 6.5])
    CONFIGS.append(("llama3 random %d" % i, base(hd, orig * 8, rope_parameters=dict(
        rope_type="llama3", rope_theta=rnd.choice([10000.0, 500000.0, 1000000.0, 123456.0]), factor=rnd.choice([2.0, 4.0, 8.0, 32.0]),
        low_freq_factor=low, high_freq_factor=high, original_max_position_embeddings=orig))))

out["configs"] = []
for name, cfg in CONFIGS:
    entry = dict(name=name, config=cfg)
    try:
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "config.json"), "w") as f:
                json.dump(cfg, f)
            conf = AutoConfig.from_pretrained(d)
            rope = LlamaRotaryEmbedding(config=conf, device="cpu")
            inv = rope.inv_freq.to(torch.float32)
            if inv.numel() != cfg["head_dim"] // 2:
                raise ValueError("inv_freq has %d values for head_dim %d: the model cannot run" % (inv.numel(), cfg["head_dim"]))
            entry["inv_freq"] = [float(v) for v in inv.tolist()]
            entry["attention_scaling"] = float(rope.attention_scaling)
            entry["rope_parameters_read"] = json.loads(json.dumps(conf.rope_parameters, default=str))
    except Exception as e:  # what transformers refuses
        entry["error"] = "%s: %s" % (type(e).__name__, e)
    out["configs"].append(entry)
print(json.dumps(out, indent=1))
