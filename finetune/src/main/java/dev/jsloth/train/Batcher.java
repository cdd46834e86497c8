package dev.jsloth.train;

import dev.jsloth.api.ops.CrossEntropy;
import dev.jsloth.data.Example;
import dev.jsloth.model.Batch;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/**
 * Turns examples into micro-batches for one epoch, deterministically from (seed, epoch): a seeded shuffle, then
 * either right-padding to the longest example of each batch (pad labels -100; causal attention makes right
 * padding harmless) or packing several examples into rows of {@code seqLen} tokens with segment ids, so
 * attention stays inside each example and positions restart; the first token of every packed example is
 * labelled -100 so no example is trained to predict its neighbour. Packed rows are made once, from epoch 0's order
 * (as TRL packs the dataset once), and each later epoch shuffles the rows: repacking every epoch gave each epoch its own
 * number of rows, so a later epoch could lose rows or steps (or fail) against the step count of the first.
 */
public final class Batcher {
    private final List<Example> examples;
    private final int batchSize;
    private final int seqLen;
    private final boolean packing;
    private final int padId;
    private final long seed;
    private List<int[][]> packedRows; // made once, on first use

    public Batcher(List<Example> examples, int batchSize, int seqLen, boolean packing, int padId, long seed) {
        if (examples.isEmpty()) throw new IllegalArgumentException("no training examples");
        for (Example e : examples)
            if (e.inputIds().length > seqLen || e.inputIds().length == 0)
                throw new IllegalArgumentException("example of " + e.inputIds().length + " tokens does not fit seq len " + seqLen + " (truncate first)");
        this.examples = examples;
        this.batchSize = batchSize;
        this.seqLen = seqLen;
        this.packing = packing;
        this.padId = padId;
        this.seed = seed;
    }

    /** The example order of an epoch: a Fisher-Yates shuffle seeded by (seed, epoch). */
    int[] order(int epoch) {
        return shuffled(examples.size(), epoch);
    }

    /** 0..n-1 in a Fisher-Yates order seeded by (seed, epoch). */
    private int[] shuffled(int n, int epoch) {
        int[] idx = new int[n];
        for (int i = 0; i < idx.length; i++) idx[i] = i;
        SplittableRandom r = new SplittableRandom(seed * 1_000_003L + epoch);
        for (int i = idx.length - 1; i > 0; i--) {
            int j = r.nextInt(i + 1);
            int t = idx[i];
            idx[i] = idx[j];
            idx[j] = t;
        }
        return idx;
    }

    /** A micro-batch and the number of real (non-padding) tokens in it. */
    public record MicroBatch(Batch batch, long tokens) {
    }

    /** The micro-batches of an epoch. */
    public List<MicroBatch> epoch(int epoch) {
        if (!packing) return padded(order(epoch));
        if (packedRows == null) packedRows = pack(order(0));
        int[] rowOrder = new int[packedRows.size()];
        if (epoch == 0) for (int i = 0; i < rowOrder.length; i++) rowOrder[i] = i; // the rows as packed: epoch 0 as before
        else rowOrder = shuffled(packedRows.size(), epoch);
        return batchesOf(packedRows, rowOrder);
    }

    private List<MicroBatch> padded(int[] order) {
        List<MicroBatch> out = new ArrayList<>();
        for (int start = 0; start < order.length; start += batchSize) {
            int b = Math.min(batchSize, order.length - start);
            int t = 0;
            long real = 0;
            for (int i = 0; i < b; i++) {
                t = Math.max(t, examples.get(order[start + i]).inputIds().length);
                real += examples.get(order[start + i]).inputIds().length;
            }
            int[] ids = new int[b * t], labels = new int[b * t];
            java.util.Arrays.fill(ids, padId);
            java.util.Arrays.fill(labels, CrossEntropy.IGNORE_INDEX);
            for (int i = 0; i < b; i++) {
                Example e = examples.get(order[start + i]);
                System.arraycopy(e.inputIds(), 0, ids, i * t, e.inputIds().length);
                System.arraycopy(e.labels(), 0, labels, i * t, e.labels().length);
            }
            out.add(new MicroBatch(new Batch(b, t, ids, labels, null), real));
        }
        return out;
    }

    /** Examples in this order, packed into rows: {ids, labels, segments, {real tokens}}. */
    private List<int[][]> pack(int[] order) {
        List<int[][]> rows = new ArrayList<>(); // {ids, labels, segments, {real tokens}}
        int[][] row = newRow();
        int fill = 0, segment = 0;
        for (int idx : order) {
            Example e = examples.get(idx);
            int n = e.inputIds().length;
            if (fill + n > seqLen) {
                row[3][0] = fill;
                closeRow(row, fill, segment);
                rows.add(row);
                row = newRow();
                fill = 0;
                segment = 0;
            }
            System.arraycopy(e.inputIds(), 0, row[0], fill, n);
            System.arraycopy(e.labels(), 0, row[1], fill, n);
            row[1][fill] = CrossEntropy.IGNORE_INDEX;
            java.util.Arrays.fill(row[2], fill, fill + n, segment++);
            fill += n;
        }
        row[3][0] = fill;
        closeRow(row, fill, segment);
        rows.add(row);
        return rows;
    }

    /** Micro-batches of {@code batchSize} packed rows, taken in {@code rowOrder}. */
    private List<MicroBatch> batchesOf(List<int[][]> rows, int[] rowOrder) {
        List<MicroBatch> out = new ArrayList<>();
        for (int start = 0; start < rowOrder.length; start += batchSize) {
            int b = Math.min(batchSize, rowOrder.length - start);
            int[] ids = new int[b * seqLen], labels = new int[b * seqLen], seg = new int[b * seqLen];
            long real = 0;
            for (int i = 0; i < b; i++) {
                int[][] r = rows.get(rowOrder[start + i]);
                real += r[3][0];
                System.arraycopy(r[0], 0, ids, i * seqLen, seqLen);
                System.arraycopy(r[1], 0, labels, i * seqLen, seqLen);
                System.arraycopy(r[2], 0, seg, i * seqLen, seqLen);
            }
            out.add(new MicroBatch(new Batch(b, seqLen, ids, labels, seg), real));
        }
        return out;
    }

    private int[][] newRow() {
        int[][] r = {new int[seqLen], new int[seqLen], new int[seqLen], new int[1]};
        java.util.Arrays.fill(r[0], padId);
        java.util.Arrays.fill(r[1], CrossEntropy.IGNORE_INDEX);
        return r;
    }

    /** The unused tail of a packed row becomes its own (ignored) segment. */
    private static void closeRow(int[][] row, int fill, int segment) {
        java.util.Arrays.fill(row[2], fill, row[2].length, segment);
    }
}
