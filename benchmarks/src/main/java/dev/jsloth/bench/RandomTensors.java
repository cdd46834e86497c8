package dev.jsloth.bench;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;

import java.util.SplittableRandom;

/** Seeded random tensors for the benchmarks. */
final class RandomTensors {
    private RandomTensors() {
    }

    /** A tensor of uniform values in [-scale, scale). */
    static Tensor random(Backend be, DType type, Shape shape, double scale, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        double[] v = new double[Math.toIntExact(shape.numel())];
        for (int i = 0; i < v.length; i++) v[i] = r.nextDouble(-scale, scale);
        return be.upload(type, shape, v);
    }

    /** Uniform integers in [0, bound). */
    static Tensor ints(Backend be, Shape shape, int bound, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        int[] v = new int[Math.toIntExact(shape.numel())];
        for (int i = 0; i < v.length; i++) v[i] = r.nextInt(bound);
        return be.uploadInts(shape, v);
    }
}
