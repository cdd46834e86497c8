package dev.jsloth.train;

import dev.jsloth.api.DType;
import dev.jsloth.api.Tensor;
import dev.jsloth.api.distributed.Communicator;
import dev.jsloth.api.distributed.ProcessGroup;
import dev.jsloth.model.LlamaModel;
import dev.jsloth.model.LoraAdapter;
import dev.jsloth.model.LoraSettings;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

/** Buckets: which gradient ranges are reduced, in what order, for caps from one layer per bucket to one bucket. */
class GradientBucketsTest {
    /** Records the element count of every tensor reduced, in order. */
    static final class Recorder implements Communicator {
        final List<Long> reduced = new ArrayList<>();
        int awaited;

        @Override
        public ProcessGroup group() {
            return ProcessGroup.single();
        }

        @Override
        public void allReduceSum(List<Tensor> tensors) {
            for (Tensor t : tensors) reduced.add(t.numel());
        }

        @Override
        public Pending allReduceSumAsync(List<Tensor> tensors) {
            allReduceSum(tensors);
            return () -> awaited++;
        }

        @Override
        public double[] allReduceSum(double[] values) {
            return values;
        }

        @Override
        public void broadcast(List<Tensor> tensors, int root) {
        }

        @Override
        public void close() {
        }
    }

    @Test
    void bucketsCoverEveryLayerOnceFromTheLastToTheFirst() throws Exception {
        java.nio.file.Path modelDir = java.nio.file.Path.of(GradientBucketsTest.class.getResource("/hf/gqa-untied/config.json").toURI()).getParent();
        try (dev.jsloth.api.Backend be = dev.jsloth.api.spi.Backends.create("cpu");
             LlamaModel m = LlamaModel.load(modelDir, be, DType.F64);
             LoraAdapter a = m.attachNewAdapter(LoraSettings.allProjections(4, 8), 11)) {
            int layers = m.config().numLayers();
            long perLayer = a.layerGradients(0).numel(), total = a.buffer().grads().numel();
            assertEquals(total, perLayer * layers, "every layer adapts the same projections");
            long layerBytes = DType.F64.byteSize(perLayer);

            Recorder one = new Recorder(); // cap of one byte: a bucket per layer
            GradientBuckets b = new GradientBuckets(a, one, layers, 1);
            for (int l = layers - 1; l >= 0; l--) b.accept(l);
            b.finish();
            assertEquals(java.util.Collections.nCopies(layers, perLayer), one.reduced);
            assertEquals(layers, one.awaited);

            Recorder all = new Recorder(); // a cap above everything: one bucket, issued at layer 0
            b = new GradientBuckets(a, all, layers, Long.MAX_VALUE);
            for (int l = layers - 1; l >= 0; l--) b.accept(l);
            assertEquals(List.of(total), all.reduced);

            Recorder two = new Recorder(); // two layers per bucket; a rank without rows reduces everything in finish()
            b = new GradientBuckets(a, two, layers, 2 * layerBytes);
            b.finish();
            List<Long> want = new ArrayList<>();
            for (int left = layers; left > 0; left -= 2) want.add(perLayer * Math.min(2, left));
            assertEquals(want, two.reduced);

            GradientBuckets wrong = new GradientBuckets(a, new Recorder(), layers, 1);
            assertThrows(IllegalStateException.class, () -> wrong.accept(0), "layers arrive from the last to the first");
        }
    }
}
