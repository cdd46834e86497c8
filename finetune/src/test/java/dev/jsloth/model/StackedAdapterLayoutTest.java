package dev.jsloth.model;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Tensor;
import dev.jsloth.api.autograd.Parameter;
import dev.jsloth.api.autograd.ParameterBuffer;
import dev.jsloth.api.spi.Backends;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;

/**
 * The adapter's buffer lays the A matrices of Q/K/V and of gate/up end to end, so the blocks can stack their rank-r
 * products, while every layer's parameters stay one span (gradient buckets) and each pair keeps its own values.
 */
class StackedAdapterLayoutTest {
    private static Path model() throws Exception {
        return Path.of(StackedAdapterLayoutTest.class.getResource("/hf/gqa-untied/config.json").toURI()).getParent();
    }

    @Test
    void sharedInputGroupsAreStackedAndLayersStayContiguous() throws Exception {
        try (Backend be = Backends.create("cpu");
             LlamaModel m = LlamaModel.load(model(), be, DType.F64);
             LoraAdapter a = m.attachNewAdapter(LoraSettings.allProjections(4, 8), 3)) {
            int layers = m.config().numLayers();
            for (int l = 0; l < layers; l++) {
                for (List<Projection> group : LoraAdapter.SHARED_INPUT) {
                    ParameterBuffer.Stack s = a.stackedA(l, group);
                    assertNotNull(s, "layer " + l + " " + group);
                    List<Double> want = new ArrayList<>();
                    for (Projection p : group) for (double v : be.download(a.pair(l, p).a().value())) want.add(v);
                    double[] got = be.download(s.value());
                    assertArrayEquals(want.stream().mapToDouble(Double::doubleValue).toArray(), got, 0.0, "stacked A of layer " + l + " " + group);
                }
                assertNull(a.buffer().stack(List.of(a.pair(l, Projection.V).a(), a.pair(l, Projection.Q).a())), "out of order");
                assertNull(a.buffer().stack(List.of(a.pair(l, Projection.Q).a(), a.pair(l, Projection.V).a())), "with a gap");
            }
            // each layer's span holds exactly that layer's gradients
            for (int l = 0; l < layers; l++) {
                a.zeroGrads();
                long count = 0;
                for (Projection p : Projection.values()) {
                    LoraAdapter.Pair pair = a.pair(l, p);
                    for (Parameter q : new Parameter[]{pair.a(), pair.b()}) {
                        be.kernels().fill(q.grad(), 1.0);
                        count += q.value().numel();
                    }
                }
                Tensor span = a.layerGradients(l);
                assertEquals(count, span.numel(), "layer " + l + " span");
                double sum = 0;
                for (double v : be.download(span)) sum += v;
                assertEquals(count, sum, 0.0, "layer " + l + " span holds its own gradients");
                double all = 0;
                for (double v : be.download(a.buffer().grads())) all += v;
                assertEquals(count, all, 0.0, "nothing outside layer " + l + " was touched");
            }
        }
    }

    @Test
    void groupsWithAnUnadaptedProjectionAreNotStacked() throws Exception {
        try (Backend be = Backends.create("cpu");
             LlamaModel m = LlamaModel.load(model(), be, DType.F64);
             LoraAdapter a = m.attachNewAdapter(new LoraSettings(4, 8, false, EnumSet.of(Projection.Q, Projection.V, Projection.UP)), 5)) {
            for (int l = 0; l < m.config().numLayers(); l++)
                for (List<Projection> group : LoraAdapter.SHARED_INPUT) assertNull(a.stackedA(l, group), "layer " + l + " " + group);
        }
    }
}
