package dev.jsloth.bench;

import dev.jsloth.api.Backend;
import dev.jsloth.api.blocks.Recompute;
import dev.jsloth.api.spi.Backends;
import dev.jsloth.model.Shapes;
import dev.jsloth.train.RandomLoraTraining;
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
    private RandomLoraTraining run;

    @Setup(Level.Trial)
    public void setUp() {
        be = Backends.create(backend);
        run = new RandomLoraTraining(be, Shapes.get(shape), batch, seq, 16, false, null, Recompute.parse(recompute), 2);
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        run.close();
        be.close();
    }

    @Benchmark
    public double step() {
        double loss = run.step(true, null, 1);
        be.synchronize();
        return loss;
    }
}
