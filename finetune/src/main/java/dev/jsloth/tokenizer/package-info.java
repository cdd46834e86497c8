/**
 * A pure-Java reader, encoder and decoder for Hugging Face {@code tokenizer.json} files, producing
 * the same ids and texts as the {@code tokenizers} library (0.23).
 *
 * <p>{@link dev.jsloth.tokenizer.Tokenizer} is the entry point. The other classes mirror the
 * components of tokenizers: {@code AddedVocabulary} (added and special tokens),
 * {@code Normalizers}, {@code PreTokenizers} (with {@code ByteLevel} and {@code Metaspace}), the
 * {@code Bpe} model, {@code PostProcessor} and {@code Decoders}. Regular expressions written for
 * Oniguruma are translated by {@code OnigRegex}.
 */
package dev.jsloth.tokenizer;
