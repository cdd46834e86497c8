"""Writes tok-edge/cases.json: tokenizer.json edge cases answered by the tokenizers library itself (and transformers'
decode for clean_up_tokenization_spaces), for dev.jsloth.tokenizer.TokenizerEdgeCasesTest. Run where tokenizers and
transformers are installed (the GPU machine):
    python3 tokenizer_edge_cases.py > finetune/src/test/resources/fixtures/tok-edge/cases.json
Each case: a tokenizer.json (as an object) or a pre-tokenizer split; what loading, encoding or decoding gives, or the
error the library raises."""
import copy
import json
import string

import tokenizers
import transformers
from tokenizers import Regex, Tokenizer, pre_tokenizers
from transformers import PreTrainedTokenizerFast

CHARS = [c for c in string.printable if c not in "\t\n\r\x0b\x0c"]  # 95 printable ASCII characters


def base(**model_extra):
    vocab = {c: i for i, c in enumerate(CHARS)}
    vocab["ab"] = len(vocab)
    model = dict(type="BPE", dropout=None, unk_token=None, continuing_subword_prefix=None, end_of_word_suffix=None,
                 fuse_unk=False, byte_fallback=False, ignore_merges=False, vocab=vocab, merges=["a b"])
    model.update(model_extra)
    return dict(version="1.0", truncation=None, padding=None, added_tokens=[], normalizer=None, pre_tokenizer=None,
                post_processor=None, decoder=dict(type="Fuse"), model=model)


def added(id_, content, **flags):
    t = dict(id=id_, content=content, single_word=False, lstrip=False, rstrip=False, normalized=False, special=False)
    t.update(flags)
    return t


cases = []


def tokenizer_case(name, tj, texts=(), decodes=()):
    entry = dict(name=name, tokenizer=tj, encodes=[], decodes=[])
    try:
        tok = Tokenizer.from_str(json.dumps(tj))
    except Exception as e:
        entry["load_error"] = "%s: %s" % (type(e).__name__, e)
        cases.append(entry)
        return
    for t in texts:
        try:
            entry["encodes"].append(dict(text=t, ids=tok.encode(t, add_special_tokens=False).ids))
        except Exception as e:
            entry["encodes"].append(dict(text=t, error="%s: %s" % (type(e).__name__, e)))
    for ids in decodes:
        entry["decodes"].append(dict(ids=ids, text=tok.decode(ids, skip_special_tokens=False)))
    cases.append(entry)


t = base()
t["added_tokens"] = [added(140, "<a>")]
tokenizer_case("added token id past the vocabulary is reassigned", t, ["x<a>", "<a><a>"], [[96], [140]])

t = base()
t["added_tokens"] = [added(96, "<a>"), added(97, "<b>"), added(96, "<a>", rstrip=True)]
tokenizer_case("an added token listed twice keeps its id and takes the later flags", t, ["x<a> y", "<b> <a>  z"])

t = base()
t["added_tokens"] = [added(96, "<x>", rstrip=True), added(97, " <y>")]
tokenizer_case("matching goes on after an rstrip token's match, not after its whitespace", t, ["<x> <y>", "<x>  <y>", "a<x>\t <y>b"])

t = base(unk_token="<z>")
t["added_tokens"] = [added(96, "<z>", special=True)]
tokenizer_case("an unk_token that is only an added token", t, ["ab", "ab\u20ac"])

t = base()
t["model"]["merges"] = ["#version: 0.2", "a b"]
tokenizer_case("a #version line in string merges", t, ["abab", "cab"])

t = base()
t["pre_tokenizer"] = dict(type="Metaspace", replacement="\u2581", prepend_scheme="always", split=True)
t["pre_tokenizer"].pop("prepend_scheme")
t["pre_tokenizer"]["add_prefix_space"] = False
tokenizer_case("Metaspace add_prefix_space false without prepend_scheme", t, ["a b"])

t = base()
t["pre_tokenizer"] = dict(type="Metaspace", replacement="\u2581", prepend_scheme="never", split=True, add_prefix_space=False)
tokenizer_case("Metaspace add_prefix_space false with prepend_scheme never", t, ["a b"])

t = base()
t["normalizer"] = dict(type="Append", append="!")
tokenizer_case("an Append normalizer", t, ["ab"])

t = base()
t["normalizer"] = dict(type="Strip")
tokenizer_case("a Strip normalizer without its fields", t, ["  ab "])

t = base()
t["normalizer"] = dict(type="Strip", strip_left=True, strip_right=False)
tokenizer_case("a Strip normalizer with its fields", t, ["  ab "])

# Split pre-tokenizers with Oniguruma classes: the pieces pre_tokenize_str gives
splits = []
TEXT = "x\u00b2 a\u200db \U0001F469\u200d\U0001F4BB _c \u00bd-\u2160 \u24b6 $5 \u00e9t\u00e9! e\u0301 \u0663\u0664"
for pattern in ["\\w+", "\\W+", "\\b", "\\B", "[[:word:]]+", "[[:punct:]]+", "\\p{Punct}+", "[^[:punct:]\\s]+", "[\\w\\-]+", "\\w\\b"]:
    for behavior in ["isolated", "removed"]:
        pieces = [p for p, _ in pre_tokenizers.Split(Regex(pattern), behavior=behavior).pre_tokenize_str(TEXT)]
        splits.append(dict(pattern=pattern, behavior=behavior, text=TEXT, pieces=pieces))
splits_ws = [p for p, _ in pre_tokenizers.Whitespace().pre_tokenize_str(TEXT)]

# transformers' decode with clean_up_tokenization_spaces (tokenizer_config.json's flag; Llama 3 sets it true)
cleanup = []
t = base()
tok = Tokenizer.from_str(json.dumps(t))
for text in ["Hello , world . Is it ? Yes !", "I do n't know ; it ' s his 's , we 're , you 've , I 'm .", "a ' b ' c", " . , ? !"]:
    ids = tok.encode(text, add_special_tokens=False).ids
    row = dict(ids=ids)
    for flag in [True, False]:
        fast = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(t)), clean_up_tokenization_spaces=flag)
        row["clean" if flag else "plain"] = fast.decode(ids)
    cleanup.append(row)

print(json.dumps(dict(tokenizers=tokenizers.__version__, transformers=transformers.__version__, cases=cases, splits=splits,
                      whitespace=dict(text=TEXT, pieces=splits_ws), cleanup=cleanup), indent=1, ensure_ascii=True))
