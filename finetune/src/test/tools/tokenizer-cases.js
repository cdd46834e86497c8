// Generates differential test cases for dev.jsloth.tokenizer from the reference implementation:
// the Node binding of Hugging Face tokenizers (npm package "tokenizers", same Rust core as the
// Python package). Not run by the build; the generated files are committed under
// src/test/resources/fixtures/tok-variants/.
//
//   npm install tokenizers@0.23.2   (in any scratch directory, then run with NODE_PATH pointing there)
//   NODE_PATH=/path/to/node_modules node finetune/src/test/tools/tokenizer-cases.js
//
// Each variant is a tokenizer.json derived from the two reference fixtures (byte-level BPE and
// SentencePiece-style BPE) with other settings; cases.json holds, for every text, the ids without
// and with special tokens and the decoded text (with and without skipping special tokens).
//
// Larger fuzzing runs (not committed): OUT=/tmp/fuzz SEED=7 RANDOM_TEXTS=2000 WIDE_TEXTS=500 ...
// then: mvn -o -pl finetune test -Dtest=TokenizerVariantsTest -Dtokenizer.variants=/tmp/fuzz
// (WIDE_TEXTS draws arbitrary code points; see the Unicode-version notes in the tokenizer package).
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require('tokenizers');

const resources = path.join(__dirname, '..', 'resources', 'fixtures');
const base = (name) => JSON.parse(fs.readFileSync(path.join(resources, name, 'tokenizer.json'), 'utf8'));

// ---------------------------------------------------------------- texts
let seed = Number(process.env.SEED || 12345);
const rand = () => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed / 0x7fffffff; };
const pick = (a) => a[Math.floor(rand() * a.length)];
const pools = [
  'abcdefghijklmnopqrstuvwxyz', 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', '0123456789', '.,;:!?\'"()[]{}<>-_/\\|@#$%^&*+=~`',
  ' ', ' ', ' ', '  ', '\t', '\n', '\r\n', '\r', '\u00a0', '\u2000\u2003\u2009\u200a', '\u3000', '\u200b', '\ufeff',
  '\u0085', '\u2028', '\u202f', '\u205f', '\u180e', '\u000b\u000c',
  'àáâãäåæçèéêëìíîïñòóôõöøùúûüýÿßÀÉÎÕÜ', 'e\u0301a\u0300o\u0308', 'ſ', 'ǅǈǋ', 'İıŁł', 'ΣσςΑΩ', 'Привет мир',
  '日本語のテキスト', '中文字符测试', '한국어 텍스트', '\u1100\u1161\u11a8', 'مرحبا بالعالم', 'שלום', 'नमस्ते', 'ภาษาไทย',
  '😀', '🦥', '👩‍💻', '👍🏽', '🇫🇷', '❤️', '𝐀𝐁𝐂', '𝟙𝟚', '①②', '½¾', '٣٤٥', '²³', 'Ⅻ',
  "'s", "'S", "'t", "'re", "'ve", "'m", "'ll", "'d", "'LL", "’s", "'ſ", ' 1234567', '3.14159',
];
const specials = ['<|begin_of_text|>', '<|end_of_text|>', '<s>', '</s>', '<unk>', '<|im_start|>', '<|im_end|>',
  'hello', '<mask>', '[X]'];
function randomText(withSpecials) {
  let s = '';
  const n = 1 + Math.floor(rand() * 12);
  for (let i = 0; i < n; i++) {
    if (withSpecials && rand() < 0.15) { s += pick(specials); continue; }
    const p = pick(pools);
    if (p.length <= 3 || rand() < 0.3) { s += p; continue; }
    const len = 1 + Math.floor(rand() * 6);
    const chars = Array.from(p);
    for (let k = 0; k < len; k++) s += pick(chars);
  }
  return s;
}
const fixed = [
  '', ' ', '  ', '\n', ' \n ', '\t\t', 'a', 'Hello world', ' leading space', 'trailing space ', 'double  space',
  'Hello\r\nWorld\r\n', 'line1\n\nline2\n', '  multiple   spaces\n\n\tand tabs',
  "don't won't it's we'll I'M HE'S y'all", 'DON\'T', 'naïve café résumé', 'ÀÉÎÕÜ ñ ß ø',
  '日本語のテキスト', 'Sloth 🦥 emoji and ZWJ 👩‍💻', '\u00a0nbsp\u200bzero-width', 'numbers 1234567890 and 3.14159',
  'def f(x):\n    return x**2  # comment', '<|begin_of_text|>hello', 'hello<|end_of_text|>', '<s>hello</s>',
  ' <s> hello </s> ', '<s><s></s>', 'hello <mask> world', 'x<mask>y', 'a <mask>, b', 'say hello to hellos',
  '<|im_start|>user\nHi<|im_end|>\n', 'Hello   <|im_start|>   there', '\u2581already\u2581metaspace',
  '▁▁', 'ǅungla', 'ΣΑΣ', 'ﬁnance', 'Ⅻ ½ ①', 'e\u0301', 'x'.repeat(300), 'ab'.repeat(200) + ' ' + '日本'.repeat(100),
  '<0x41>', '<unk>', 'unknown ☃ chars ⚡', '\ud83d\ude00\ud83d\ude00\ud83d\ude00', 'tab\tsep\tvalues',
  'a\u0085b\u2028c', 'mixedCASE Words ALLCAPS lowercase', '$100,000.00 (USD)', 'https://example.com/path?q=1&r=2',
  'foo@bar.com', 'C++ and C# and F#', '1,234,567.89', '🇫🇷🇩🇪', '𝐀𝐁𝐂 𝟙𝟚', 'a  b   c    d',
];
// Any code point outside the surrogates, to catch Unicode property differences.
function wideText() {
  let s = '';
  const n = 1 + Math.floor(rand() * 10);
  for (let i = 0; i < n; i++) {
    let cp;
    const r = rand();
    if (r < 0.4) cp = Math.floor(rand() * 0x3000);
    else if (r < 0.7) cp = Math.floor(rand() * 0x10000);
    else cp = Math.floor(rand() * 0x110000);
    if (cp >= 0xd800 && cp <= 0xdfff) cp = 0x20;
    s += String.fromCodePoint(cp);
    if (rand() < 0.3) s += pick([' ', '  ', '\n', 'a', '1', "'s"]);
  }
  return s;
}
const randomCount = Number(process.env.RANDOM_TEXTS || 180);
const wideCount = Number(process.env.WIDE_TEXTS || 0);
const texts = fixed.slice();
for (let i = 0; i < randomCount; i++) texts.push(randomText(i % 3 === 0));
for (let i = 0; i < wideCount; i++) texts.push(wideText());

// ---------------------------------------------------------------- variants
const clone = (o) => JSON.parse(JSON.stringify(o));
const BL = base('tok-bytelevel');
const SPM = base('tok-spm');
const variants = {};

variants['bl-llama3'] = clone(BL);
{
  const t = clone(BL);
  t.pre_tokenizer = { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true };
  t.post_processor = { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true };
  variants['bl-gpt2'] = t;
}
{
  const t = clone(BL);
  t.model.ignore_merges = true;
  t.normalizer = { type: 'NFC' };
  t.pre_tokenizer.pretokenizers[0].pattern.Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  t.post_processor = { type: 'Sequence', processors: [
    { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
    { type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<|begin_of_text|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } },
               { SpecialToken: { id: '<|end_of_text|>', type_id: 0 } }],
      pair: [{ Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: {
        '<|begin_of_text|>': { id: '<|begin_of_text|>', ids: [0], tokens: ['<|begin_of_text|>'] },
        '<|end_of_text|>': { id: '<|end_of_text|>', ids: [1], tokens: ['<|end_of_text|>'] } } }] };
  variants['bl-qwen-nfc-ignore-merges'] = t;
}
{
  const t = clone(BL);
  const next = Object.keys(t.model.vocab).length;
  t.added_tokens.push(
    { id: next, content: '<|im_start|>', single_word: false, lstrip: true, rstrip: false, normalized: false, special: true },
    { id: next + 1, content: '<|im_end|>', single_word: false, lstrip: false, rstrip: true, normalized: false, special: true },
    { id: next + 2, content: 'hello', single_word: true, lstrip: false, rstrip: false, normalized: true, special: false },
    { id: next + 3, content: '<mask>', single_word: false, lstrip: true, rstrip: true, normalized: false, special: false },
    { id: next + 4, content: '[X]', single_word: false, lstrip: false, rstrip: false, normalized: true, special: true });
  t.normalizer = { type: 'Sequence', normalizers: [{ type: 'NFKC' }, { type: 'Lowercase' }] };
  variants['bl-added-lowercase'] = t;
}
{
  const t = clone(BL);
  t.pre_tokenizer = { type: 'Sequence', pretokenizers: [
    { type: 'Split', pattern: { Regex: '\\s+' }, behavior: 'MergedWithPrevious', invert: false },
    { type: 'Split', pattern: { String: '.' }, behavior: 'Contiguous', invert: false },
    { type: 'Digits', individual_digits: true },
    { type: 'Split', pattern: { Regex: '\\p{L}+' }, behavior: 'Removed', invert: true },
    { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false }] };
  variants['bl-split-behaviors'] = t;
}
{
  const t = clone(BL);
  t.pre_tokenizer = { type: 'Sequence', pretokenizers: [
    { type: 'Split', pattern: { Regex: '\\s+' }, behavior: 'MergedWithNext', invert: false },
    { type: 'Punctuation', behavior: 'Isolated' },
    { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: false }] };
  t.normalizer = { type: 'Sequence', normalizers: [{ type: 'Strip', strip_left: true, strip_right: true },
    { type: 'Replace', pattern: { Regex: '\\d' }, content: '#' }] };
  variants['bl-merged-next-strip'] = t;
}

variants['spm-first'] = clone(SPM);
{
  const t = clone(SPM);
  t.normalizer = { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '▁' },
    { type: 'Replace', pattern: { String: ' ' }, content: '▁' }] };
  t.pre_tokenizer = null;
  variants['spm-llama2-legacy'] = t;
}
{
  const t = clone(SPM);
  t.pre_tokenizer = { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true };
  t.decoder = { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true };
  variants['spm-always-split'] = t;
}
{
  const t = clone(SPM);
  t.pre_tokenizer = { type: 'Metaspace', replacement: '▁', prepend_scheme: 'never', split: true };
  t.decoder = { type: 'Sequence', decoders: [{ type: 'ByteFallback' }, { type: 'Metaspace', replacement: '▁',
    prepend_scheme: 'never', split: true }] };
  variants['spm-never'] = t;
}
{
  const t = clone(SPM);
  t.model.byte_fallback = false;
  t.model.fuse_unk = true;
  const next = Object.keys(t.model.vocab).length;
  t.added_tokens.push(
    { id: next, content: '<|im_start|>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
    { id: next + 1, content: '<|im_end|>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
    { id: next + 2, content: '<mask>', single_word: true, lstrip: true, rstrip: true, normalized: true, special: false });
  t.post_processor.single.push({ SpecialToken: { id: '</s>', type_id: 0 } });
  t.post_processor.special_tokens['</s>'] = { id: '</s>', ids: [2], tokens: ['</s>'] };
  variants['spm-unk-fused-added'] = t;
}
{
  const t = clone(SPM);
  t.model.fuse_unk = false;
  t.normalizer = { type: 'Sequence', normalizers: [{ type: 'NFKD' }, { type: 'StripAccents' }, { type: 'Lowercase' }] };
  t.pre_tokenizer = { type: 'Sequence', pretokenizers: [{ type: 'WhitespaceSplit' },
    { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: true }] };
  variants['spm-nfkd-whitespace'] = t;
}

{
  // Llama 2 legacy normalizer with normalized added tokens (matched on the normalized text, and
  // decoded in their normalized form by tokenizers 0.23).
  const t = clone(variants['spm-llama2-legacy']);
  const next = Object.keys(t.model.vocab).length;
  t.added_tokens.push(
    { id: next, content: '<pad>', single_word: false, lstrip: false, rstrip: false, normalized: true, special: false },
    { id: next + 1, content: 'hello', single_word: false, lstrip: false, rstrip: false, normalized: true, special: true });
  variants['spm-legacy-normalized-added'] = t;
}
{
  // Byte fallback with some byte tokens missing: those characters become <unk> (fused).
  const t = clone(SPM);
  for (const b of ['<0xE6>', '<0x98>', '<0xF0>']) delete t.model.vocab[b];
  variants['spm-missing-bytes'] = t;
}
/** A consistent random BPE over letters with a continuing-subword prefix or an end-of-word suffix. */
function affixBpe(prefix, suffix) {
  const letters = 'abcdefghijklmnopqrstuvwxyz'.split('');
  const vocab = { '[UNK]': 0 };
  const add = (tok) => { if (!(tok in vocab)) vocab[tok] = Object.keys(vocab).length; };
  const tokens = [];
  for (const c of letters) {
    add(c); tokens.push(c);
    if (prefix) { add(prefix + c); tokens.push(prefix + c); }
    if (suffix) { add(c + suffix); tokens.push(c + suffix); }
  }
  const merges = [];
  while (merges.length < 400) {
    const a = pick(tokens);
    const b = pick(tokens);
    if (suffix && a.endsWith(suffix)) continue;
    if (prefix && !b.startsWith(prefix)) continue;
    const merged = a + (prefix ? b.slice(prefix.length) : b);
    if (merged.length > 10) continue;
    add(merged); tokens.push(merged);
    merges.push([a, b]);
  }
  return { version: '1.0', truncation: null, padding: null,
    added_tokens: [{ id: 0, content: '[UNK]', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
    normalizer: { type: 'Lowercase' },
    pre_tokenizer: { type: 'Whitespace' },
    post_processor: null,
    decoder: prefix ? { type: 'WordPiece', prefix: prefix, cleanup: true } : { type: 'BPEDecoder', suffix: suffix },
    model: { type: 'BPE', dropout: null, unk_token: '[UNK]', continuing_subword_prefix: prefix, end_of_word_suffix: suffix,
      fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges } };
}
variants['bpe-prefix-wordpiece'] = affixBpe('##', null);
variants['bpe-suffix'] = affixBpe(null, '</w>');

// ---------------------------------------------------------------- generation
(async () => {
  const outRoot = process.env.OUT || path.join(resources, 'tok-variants');
  for (const [name, json] of Object.entries(variants)) {
    const dir = path.join(outRoot, name);
    fs.mkdirSync(dir, { recursive: true });
    const text = JSON.stringify(json);
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), text);
    const tok = Tokenizer.fromString(text);
    const cases = [];
    for (const t of texts) {
      const ids = (await tok.encode(t, null, { addSpecialTokens: false })).getIds();
      const idsSpecial = (await tok.encode(t, null, { addSpecialTokens: true })).getIds();
      cases.push({ text: t, ids, ids_special: idsSpecial,
        decoded: await tok.decode(idsSpecial, false), decoded_skip: await tok.decode(idsSpecial, true) });
    }
    fs.writeFileSync(path.join(dir, 'cases.json'), JSON.stringify(cases));
    console.log(name, cases.length);
  }
})();
