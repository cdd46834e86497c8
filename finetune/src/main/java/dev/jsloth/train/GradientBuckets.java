package dev.jsloth.train;

import dev.jsloth.api.Tensor;
import dev.jsloth.api.distributed.Communicator;
import dev.jsloth.model.LoraAdapter;

import java.util.ArrayList;
import java.util.List;
import java.util.function.IntConsumer;

/**
 * Data-parallel gradient reduction overlapped with backward, in buckets as PyTorch DDP does: backward finishes the
 * layers' gradients from the last layer to the first; each finished layer joins the open bucket, and a bucket is
 * all-reduced (asynchronously) once it holds at least {@code capBytes}, or when the first layer is done. Layers are
 * stored contiguously, so a bucket is one view of the shared gradient buffer. Every rank forms the same buckets in
 * the same order, which the collectives require.
 */
public final class GradientBuckets implements IntConsumer {
    /** DDP's default bucket size. */
    public static final long DEFAULT_CAP_BYTES = 25L << 20;

    private final LoraAdapter adapter;
    private final Communicator comm;
    private final long capBytes;
    private final List<Communicator.Pending> pending = new ArrayList<>();
    private int next;          // the layer expected next (counting down)
    private int open = -1;     // the highest layer of the open bucket, or -1
    private long openBytes;

    public GradientBuckets(LoraAdapter adapter, Communicator comm, int layers, long capBytes) {
        this.adapter = adapter;
        this.comm = comm;
        this.capBytes = capBytes;
        this.next = layers - 1;
    }

    /** Layer {@code layer}'s gradients are final (layers arrive from the last to the first). */
    @Override
    public void accept(int layer) {
        if (layer != next) throw new IllegalStateException("layer " + layer + " finished out of order (expected " + next + ")");
        next--;
        if (open < 0) open = layer;
        Tensor g = adapter.layerGradients(layer);
        if (g != null) openBytes += g.dtype().byteSize(g.numel()); // a view: nothing to free
        if (openBytes >= capBytes || layer == 0) flush(layer);
    }

    private void flush(int lowest) {
        Tensor g = adapter.layerGradients(lowest, open);
        if (g != null) pending.add(comm.allReduceSumAsync(List.of(g)));
        open = -1;
        openBytes = 0;
    }

    /** Reduces whatever backward did not (all of it on a rank without rows) and waits for every reduction. */
    public void finish() {
        while (next >= 0) accept(next);
        for (Communicator.Pending p : pending) p.await();
        pending.clear();
    }
}
