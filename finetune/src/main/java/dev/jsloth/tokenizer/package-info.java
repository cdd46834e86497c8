/**
 * A pure-Java reader, encoder and decoder for Hugging Face {@code tokenizer.json} files, producing
 * the same ids and texts as the {@code tokenizers} library (0.23).
 *
 * <p>{@link dev.jsloth.tokenizer.Tokenizer} is the entry point. The other classes mirror the
 * components of tokenizers: {@code AddedVocabulary} (added and special tokens),
 * {@code Normalizers}, {@code PreTokenizers} (with {@code ByteLevel} and {@code Metaspace}), the
 * {@code Bpe} model, {@code PostProcessor} and {@code Decoders}. Regular expressions written for
 * Oniguruma are translated by {@code OnigRegex}.
 *
 * <p>Known differences from tokenizers: {@code truncation} and {@code padding} are ignored; Unicode
 * data comes from the JDK. The classes used by the regular expressions ({@code \p{L}},
 * {@code \p{N}}, {@code \s}) agree with the Oniguruma build of tokenizers 0.23 on every code point,
 * but the NFC/NFD/NFKC/NFKD normalizers, {@code StripAccents} and the {@code Punctuation}
 * pre-tokenizer use the JDK's newer tables, so they treat some characters assigned after Unicode
 * 9 to 11 differently (for example U+32FF under NFKC, or U+2E45 as punctuation).
 */
package dev.jsloth.tokenizer;
