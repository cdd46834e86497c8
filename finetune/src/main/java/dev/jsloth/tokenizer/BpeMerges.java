package dev.jsloth.tokenizer;

import java.util.Arrays;

/**
 * The merges of a BPE model: an open-addressing hash map from a pair of token ids to the merge's
 * rank and the id of the merged token, packed in one {@code long} ({@link #ABSENT} when the pair
 * has no merge).
 */
final class BpeMerges {
    static final long ABSENT = -1L;
    private long[] keys;
    private long[] values;
    private int size;
    private int mask;

    BpeMerges(int expected) {
        int cap = Integer.highestOneBit(Math.max(16, expected * 2) - 1) << 1;
        keys = new long[cap];
        values = new long[cap];
        Arrays.fill(keys, -1L);
        mask = cap - 1;
    }

    static int rank(long value) {
        return (int) (value >>> 32);
    }

    static int newId(long value) {
        return (int) value;
    }

    private static long key(int a, int b) {
        return ((long) a << 32) | (b & 0xFFFFFFFFL);
    }

    private static int hash(long k) {
        k ^= k >>> 33;
        k *= 0xff51afd7ed558ccdL;
        k ^= k >>> 33;
        return (int) k;
    }

    /** Later merges of the same pair replace earlier ones, as when tokenizers builds its map. */
    void put(int a, int b, int rank, int newId) {
        if ((size + 1) * 2 > keys.length) {
            grow();
        }
        long k = key(a, b);
        int i = hash(k) & mask;
        while (keys[i] != -1L && keys[i] != k) {
            i = (i + 1) & mask;
        }
        if (keys[i] == -1L) {
            size++;
        }
        keys[i] = k;
        values[i] = ((long) rank << 32) | (newId & 0xFFFFFFFFL);
    }

    long get(int a, int b) {
        long k = key(a, b);
        int i = hash(k) & mask;
        while (true) {
            long found = keys[i];
            if (found == k) {
                return values[i];
            }
            if (found == -1L) {
                return ABSENT;
            }
            i = (i + 1) & mask;
        }
    }

    private void grow() {
        long[] oldKeys = keys;
        long[] oldValues = values;
        keys = new long[oldKeys.length * 2];
        values = new long[oldKeys.length * 2];
        Arrays.fill(keys, -1L);
        mask = keys.length - 1;
        size = 0;
        for (int i = 0; i < oldKeys.length; i++) {
            if (oldKeys[i] != -1L) {
                put((int) (oldKeys[i] >>> 32), (int) oldKeys[i], rank(oldValues[i]), newId(oldValues[i]));
            }
        }
    }
}
