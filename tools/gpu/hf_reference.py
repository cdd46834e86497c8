"""Reference checks run where torch + transformers + peft are (the GPU machine; CPU is enough for these).

usage: hf_reference.py FIXTURES_DIR INTEROP_JSON OUT_DIR

1. pure-float64 goldens: transformers' Llama in float64 has float32 "islands" (RMSNorm casts to float32, eager
   attention takes softmax in float32, RoPE tables in float32, the loss upcasts logits to float32). This patches
   them to stay in float64 (RoPE: the float32 angle as transformers computes it, cos/sin taken in float64) and writes,
   per fixture case, logits, losses and every LoRA gradient: OUT/pure64-CASE.safetensors + .json.
2. interop: for each item of INTEROP_JSON ({name, model, adapter|null, batch, jsloth_loss}), the loss transformers
   (+ PEFT for an adapter) computes on the same batch, so a jsloth-written adapter / merged checkpoint is shown to
   load and agree in the reference stack: OUT/interop.json.
"""
import json, os, sys, math
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
import transformers.models.llama.modeling_llama as ml
from transformers import LlamaForCausalLM
from peft import PeftModel

fixtures, interop_file, out = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(out, exist_ok=True)

# ---- the float64 patches
def rms_forward(self, hidden_states):
    variance = hidden_states.pow(2).mean(-1, keepdim=True)
    return self.weight * (hidden_states * torch.rsqrt(variance + self.variance_epsilon))

def eager64(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    key_states = ml.repeat_kv(key, module.num_key_value_groups)
    value_states = ml.repeat_kv(value, module.num_key_value_groups)
    w = torch.matmul(query, key_states.transpose(2, 3)) * scaling
    if attention_mask is not None:
        w = w + attention_mask[:, :, :, : key_states.shape[-2]]
    w = torch.softmax(w, dim=-1)
    o = torch.matmul(w, value_states).transpose(1, 2).contiguous()
    return o, w

orig_rope_forward = ml.LlamaRotaryEmbedding.forward
@torch.no_grad()
def rope64(self, x, position_ids):
    inv = self.inv_freq[None, :, None].float().expand(position_ids.shape[0], -1, 1)
    freqs = (inv @ position_ids[:, None, :].float()).transpose(1, 2)  # float32 angle, as transformers
    emb = torch.cat((freqs, freqs), dim=-1).double()
    return (emb.cos() * self.attention_scaling).to(x.dtype), (emb.sin() * self.attention_scaling).to(x.dtype)

def patch(on):
    ml.LlamaRMSNorm.forward = rms_forward if on else patch.rms
    ml.eager_attention_forward = eager64 if on else patch.eager
    ml.LlamaRotaryEmbedding.forward = rope64 if on else orig_rope_forward
patch.rms, patch.eager = ml.LlamaRMSNorm.forward, ml.eager_attention_forward

def loss64(logits, labels):
    s = logits[:, :-1, :].reshape(-1, logits.shape[-1])
    t = labels[:, 1:].reshape(-1).long()
    return F.cross_entropy(s, t, ignore_index=-100, reduction="mean")

from safetensors import safe_open
import hashlib
def sha256(path):
    with open(path, "rb") as f: return hashlib.sha256(f.read()).hexdigest()
patch(True)
for case in sorted(os.listdir(fixtures)):
    d = os.path.join(fixtures, case)
    if not os.path.isfile(os.path.join(d, "expected.safetensors")): continue
    with safe_open(os.path.join(d, "expected.safetensors"), "pt") as f:
        ids, labels = f.get_tensor("input_ids").long(), f.get_tensor("labels").long()
    model = LlamaForCausalLM.from_pretrained(d, dtype=torch.float64, attn_implementation="eager")
    with torch.no_grad():
        base = model(input_ids=ids).logits
    pm = PeftModel.from_pretrained(model, os.path.join(d, "adapter"), is_trainable=True)
    lora = pm(input_ids=ids).logits
    l = loss64(lora, labels)
    l.backward()
    t = {"base.logits": base.contiguous(), "lora.logits": lora.detach().contiguous()}
    for n, p in pm.named_parameters():
        if p.requires_grad: t["grad." + n] = p.grad.detach().contiguous()
    save_file(t, os.path.join(out, "pure64-%s.safetensors" % case))
    # the weights these goldens belong to: a test given other weights under the same case name skips, saying so
    json.dump(dict(base_loss=loss64(base, labels).item(), lora_loss=l.item(), model_sha256=sha256(os.path.join(d, "model.safetensors")),
                   adapter_sha256=sha256(os.path.join(d, "adapter", "adapter_model.safetensors"))), open(os.path.join(out, "pure64-%s.json" % case), "w"))
    print("pure64", case, "base_loss", loss64(base, labels).item(), "lora_loss", l.item(), flush=True)
patch(False)

# ---- interop: jsloth-written files loaded by the reference stack
results = []
for item in json.load(open(interop_file)):
    b = json.load(open(item["batch"]))
    ids = torch.tensor(b["input_ids"]); labels = torch.tensor(b.get("labels", b["input_ids"]))
    model = LlamaForCausalLM.from_pretrained(item["model"], dtype=torch.float32)
    if item.get("adapter"): model = PeftModel.from_pretrained(model, item["adapter"])
    with torch.no_grad():
        hf = model(input_ids=ids, labels=labels).loss.item()
    r = dict(name=item["name"], hf_loss=hf, jsloth_loss=item["jsloth_loss"], rel_diff=abs(hf - item["jsloth_loss"]) / abs(hf))
    results.append(r); print(json.dumps(r), flush=True)
json.dump(results, open(os.path.join(out, "interop.json"), "w"), indent=1)
