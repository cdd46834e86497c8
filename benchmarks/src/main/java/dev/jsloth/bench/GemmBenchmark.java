package dev.jsloth.bench;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;
import dev.jsloth.api.spi.Backends;
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
 * F32 GEMM {@code C[M,N] = A[M,K] op(B)} at the square size and LoRA's three skinny shapes (rank 16, hidden 2048,
 * 4096 tokens): {@code X A^T} (4096x16x2048), {@code dA = dH^T X} (16x4096x2048), {@code H B^T} (4096x2048x16).
 * GFLOP/s = 2*M*N*K / (seconds per op); {@code tools/bench/jmh.sh} prints both. {@code transB} is the
 * {@code X W^T} layout of a linear layer (B stored [N,K]). Threads: {@code -Djsloth.threads} (given to
 * {@code tools/bench/jmh.sh} as {@code -jvmArgsAppend -Djsloth.threads=T}).
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 5, time = 1)
@Measurement(iterations = 10, time = 1)
@Fork(1) // the fork inherits the launching JVM's flags (tools/bench/jmh.sh: the Vector API module, native access)
public class GemmBenchmark {
    @Param({"2048x2048x2048", "4096x16x2048", "16x4096x2048", "4096x2048x16"})
    public String mnk;

    @Param({"false", "true"})
    public boolean transB;

    @Param("cpu")
    public String backend;

    private Backend be;
    private Tensor a, b, c;

    @Setup(Level.Trial)
    public void setUp() {
        String[] p = mnk.split("x");
        int m = Integer.parseInt(p[0]), n = Integer.parseInt(p[1]), k = Integer.parseInt(p[2]);
        be = Backends.create(backend);
        a = RandomTensors.random(be, DType.F32, Shape.of(m, k), 1, 1);
        b = RandomTensors.random(be, DType.F32, transB ? Shape.of(n, k) : Shape.of(k, n), 1, 2);
        c = be.allocate(DType.F32, m, n);
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        a.close();
        b.close();
        c.close();
        be.close();
    }

    @Benchmark
    public void gemm() {
        be.kernels().gemm(false, transB, 1, a, b, 0, c);
        be.synchronize();
    }
}
