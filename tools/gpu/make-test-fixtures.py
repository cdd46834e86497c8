# Run on the GPU machine with OUT set (the device tool sets it): python3 tools/gpu/make-test-fixtures.py
# Goldens for jsloth tests, made with the reference stack: (1) a tiny Mistral with sliding_window 4, greedy generation in
# float64 with eager attention, with and without the window; (2) if bitsandbytes is here, a tiny Llama saved in 4-bit NF4
# by transformers + bitsandbytes, with bitsandbytes' own dequantization of every 4-bit weight.
import json, os, sys, torch
out = os.environ["OUT"]
import transformers
print("transformers", transformers.__version__, "torch", torch.__version__)

from transformers import MistralConfig, MistralForCausalLM
torch.manual_seed(5)
kw = dict(hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
          vocab_size=256, max_position_embeddings=64, rope_theta=10000.0, rms_norm_eps=1e-6, tie_word_embeddings=False,
          bos_token_id=1, eos_token_id=2)
cfg = MistralConfig(**kw, sliding_window=4)
m = MistralForCausalLM(cfg)
with torch.no_grad():
    for p in m.parameters():
        p.mul_(6.0)  # larger weights: the attention pattern, and so the window, matters to the greedy choice
d = os.path.join(out, "mistral-window")
m.save_pretrained(d, safe_serialization=True)
prompt = [5, 77, 130, 9]
res = {"prompt": prompt}
for name, window in (("window_ids", 4), ("full_ids", None)):
    c = MistralConfig(**kw, sliding_window=window)
    c._attn_implementation = "eager"
    mm = MistralForCausalLM.from_pretrained(d, config=c, torch_dtype=torch.float64, attn_implementation="eager").eval()
    mm.generation_config.eos_token_id = None
    mm.generation_config.pad_token_id = 0
    with torch.no_grad():
        g = mm.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False)
    res[name] = g[0, len(prompt):].tolist()
print(json.dumps(res))
json.dump(res, open(os.path.join(d, "expected.json"), "w"))

try:
    import bitsandbytes as bnb
    from transformers import LlamaConfig, LlamaForCausalLM, BitsAndBytesConfig
    print("bitsandbytes", bnb.__version__)
    torch.manual_seed(7)
    lc = LlamaConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
                     vocab_size=256, max_position_embeddings=64, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    base = os.path.join(out, "bnb-base")
    LlamaForCausalLM(lc).to(torch.bfloat16).save_pretrained(base, safe_serialization=True)
    for dq in (True, False):
        q = LlamaForCausalLM.from_pretrained(base, quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                             bnb_4bit_use_double_quant=dq, bnb_4bit_compute_dtype=torch.bfloat16), device_map="cuda")
        qd = os.path.join(out, "bnb-nf4-" + ("dq" if dq else "plain"))
        q.save_pretrained(qd, safe_serialization=True)
        from safetensors.torch import save_file
        deq = {}
        for n, mod in q.named_modules():
            if isinstance(mod, bnb.nn.Linear4bit):
                deq[n + ".weight"] = bnb.functional.dequantize_4bit(mod.weight.data, mod.weight.quant_state).float().cpu().contiguous()
        save_file(deq, os.path.join(qd, "dequantized.safetensors"))
        print(qd, sorted(os.listdir(qd)), len(deq))
except Exception as e:
    print("bnb part skipped:", repr(e)[:300])
