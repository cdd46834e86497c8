package dev.jsloth.tokenizer;

import java.util.Arrays;
import java.util.concurrent.ThreadLocalRandom;

/**
 * The symbols of one word during BPE merging: a doubly linked list kept in arrays, merged with a
 * priority queue of candidate pairs ordered by (merge rank, position), exactly like tokenizers'
 * {@code Word::merge_all}. Each merge costs O(log n), so a word of n symbols takes O(n log n).
 */
final class BpeWord {
    private int[] ids;
    private int[] prev;
    private int[] next;
    private boolean[] removed;
    private int size;

    BpeWord(int capacity) {
        capacity = Math.max(capacity, 4);
        ids = new int[capacity];
        prev = new int[capacity];
        next = new int[capacity];
        removed = new boolean[capacity];
    }

    /** Appends a symbol. */
    void add(int id) {
        if (size == ids.length) {
            int cap = size * 2;
            ids = Arrays.copyOf(ids, cap);
            prev = Arrays.copyOf(prev, cap);
            next = Arrays.copyOf(next, cap);
            removed = Arrays.copyOf(removed, cap);
        }
        ids[size] = id;
        prev[size] = size - 1;
        next[size] = -1;
        if (size > 0) {
            next[size - 1] = size;
        }
        size++;
    }

    /**
     * Applies the merges, lowest rank first and leftmost first, and returns the final symbols.
     * With {@code dropout > 0} each candidate merge is skipped with that probability (BPE-dropout).
     */
    int[] mergeAll(BpeMerges merges, float dropout) {
        MergeQueue queue = new MergeQueue(Math.max(4, size));
        for (int i = 0; i + 1 < size; i++) {
            long m = merges.get(ids[i], ids[i + 1]);
            if (m != BpeMerges.ABSENT) {
                queue.push(BpeMerges.rank(m), i, BpeMerges.newId(m));
            }
        }
        MergeQueue skipped = dropout > 0f ? new MergeQueue(4) : null;
        while (!queue.isEmpty()) {
            int rank = queue.topRank();
            int pos = queue.topPos();
            int newId = queue.topNewId();
            queue.pop();
            if (skipped != null) {
                if (ThreadLocalRandom.current().nextFloat() < dropout) {
                    skipped.push(rank, pos, newId);
                    continue;
                }
                while (!skipped.isEmpty()) {
                    queue.push(skipped.topRank(), skipped.topPos(), skipped.topNewId());
                    skipped.pop();
                }
            }
            if (removed[pos] || next[pos] < 0) {
                continue;
            }
            int right = next[pos];
            long current = merges.get(ids[pos], ids[right]);
            if (current == BpeMerges.ABSENT || BpeMerges.newId(current) != newId) {
                continue; // stale entry: the pair at pos has changed since it was queued
            }
            ids[pos] = newId;
            next[pos] = next[right];
            removed[right] = true;
            if (next[right] >= 0) {
                prev[next[right]] = pos;
            }
            if (prev[pos] >= 0) {
                long m = merges.get(ids[prev[pos]], ids[pos]);
                if (m != BpeMerges.ABSENT) {
                    queue.push(BpeMerges.rank(m), prev[pos], BpeMerges.newId(m));
                }
            }
            if (next[pos] >= 0) {
                long m = merges.get(ids[pos], ids[next[pos]]);
                if (m != BpeMerges.ABSENT) {
                    queue.push(BpeMerges.rank(m), pos, BpeMerges.newId(m));
                }
            }
        }
        int count = 0;
        for (int i = 0; i < size; i++) {
            if (!removed[i]) {
                count++;
            }
        }
        int[] out = new int[count];
        for (int i = 0, k = 0; i < size; i++) {
            if (!removed[i]) {
                out[k++] = ids[i];
            }
        }
        return out;
    }

    /** A binary min-heap of pending merges ordered by (rank, position). */
    private static final class MergeQueue {
        private long[] keys; // rank << 32 | pos
        private int[] newIds;
        private int size;

        MergeQueue(int capacity) {
            keys = new long[capacity];
            newIds = new int[capacity];
        }

        boolean isEmpty() {
            return size == 0;
        }

        int topRank() {
            return (int) (keys[0] >>> 32);
        }

        int topPos() {
            return (int) keys[0];
        }

        int topNewId() {
            return newIds[0];
        }

        void push(int rank, int pos, int newId) {
            if (size == keys.length) {
                keys = Arrays.copyOf(keys, size * 2);
                newIds = Arrays.copyOf(newIds, size * 2);
            }
            long key = ((long) rank << 32) | (pos & 0xFFFFFFFFL);
            int i = size++;
            while (i > 0) {
                int parent = (i - 1) >>> 1;
                if (keys[parent] <= key) {
                    break;
                }
                keys[i] = keys[parent];
                newIds[i] = newIds[parent];
                i = parent;
            }
            keys[i] = key;
            newIds[i] = newId;
        }

        void pop() {
            size--;
            if (size == 0) {
                return;
            }
            long key = keys[size];
            int id = newIds[size];
            int i = 0;
            while (true) {
                int child = 2 * i + 1;
                if (child >= size) {
                    break;
                }
                if (child + 1 < size && keys[child + 1] < keys[child]) {
                    child++;
                }
                if (keys[child] >= key) {
                    break;
                }
                keys[i] = keys[child];
                newIds[i] = newIds[child];
                i = child;
            }
            keys[i] = key;
            newIds[i] = id;
        }
    }
}
