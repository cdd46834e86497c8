package dev.jsloth.bench;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.blocks.Recompute;
import dev.jsloth.api.spi.Backends;
import dev.jsloth.model.LlamaConfig;
import dev.jsloth.model.LlamaModel;
import dev.jsloth.model.LlamaWeights;
import dev.jsloth.model.LoraAdapter;
import dev.jsloth.model.LoraSettings;
import dev.jsloth.model.Shapes;
import dev.jsloth.train.AdamW;
import dev.jsloth.model.Batch;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

/**
 * One whole LoRA training step (zero gradients, forward + loss + backward with gradient checkpointing, AdamW) of a
 * random-initialised model of the named shape, r = 16 on all seven projections: what {@code jsloth bench --shape}
 * times, under JMH. tokens/s = batch * seq / (seconds per step); achieved GFLOP/s =
 * {@link Shapes#trainingFlopsPerToken} * tokens/s.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 3, time = 2)
@Measurement(iterations = 5, time = 2)
@Fork(1) // the fork inherits the launching JVM's flags (tools/bench/jmh.sh: the Vector API module, native access)
public class LoraStepBenchmark {
    @Param("llama-25m")
    public String shape;
    @Param("cpu")
    public String backend;
    @Param("2")
    public int batch;
    @Param("256")
    public int seq;
    @Param("mlp")
    public String recompute;

    private Backend be;
    private LlamaWeights weights;
    private LlamaModel model;
    private LoraAdapter adapter;
    private AdamW optimizer;
    private Batch data;

    @Setup(Level.Trial)
    public void setUp() throws Exception {
        be = Backends.create(backend);
        LlamaConfig c = Shapes.get(shape);
        SplittableRandom r = new SplittableRandom(2);
        int[] ids = new int[batch * seq];
        for (int i = 0; i < ids.length; i++) ids[i] = r.nextInt(c.vocabSize());
        data = new Batch(batch, seq, ids, null, null);
        DType storage = backend.equals("cpu") ? DType.F32 : DType.BF16;
        weights = LlamaWeights.random(c, be, storage, 3, 0.02, false);
        model = LlamaModel.of(null, c, weights, be, backend.equals("cuda") ? DType.BF16 : DType.F32);
        model.recompute(Recompute.parse(recompute));
        adapter = model.attachNewAdapter(LoraSettings.allProjections(16, 16), 4);
        optimizer = new AdamW(adapter.buffer(), 0.9, 0.999, 1e-8, 0.0);
    }

    @TearDown(Level.Trial)
    public void tearDown() throws Exception {
        optimizer.close();
        adapter.close();
        model.close();
        weights.close();
        be.close();
    }

    @Benchmark
    public double step() {
        adapter.zeroGrads();
        double loss = model.lossAndBackward(data, 1.0 / data.countedTokens(), true, null).meanLoss();
        optimizer.step(1e-4);
        be.synchronize();
        return loss;
    }
}
