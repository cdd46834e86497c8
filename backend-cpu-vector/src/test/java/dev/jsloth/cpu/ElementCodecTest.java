package dev.jsloth.cpu;

import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;

/** The F32 codec's vector widening and narrowing give the scalar casts' bits, at awkward lengths and offsets. */
class ElementCodecTest {
    private static final double[] SPECIAL = {0, -0.0, 1e-45, -1e-45, 1.4e-45, 1e-40, -3e-39, 3.4028235e38, 3.5e38, -1e300,
            Double.MIN_VALUE, Double.POSITIVE_INFINITY, Double.NEGATIVE_INFINITY, Double.NaN, 1.0000000596046448,
            1.0000001788139343, 0.1, -2.5e-8};

    @Test
    void f32RunsMatchScalarCasts() {
        SplittableRandom r = new SplittableRandom(5);
        try (Arena arena = Arena.ofConfined()) {
            for (int n : new int[]{1, 3, 4, 5, 13, 207, 4098}) {
                for (int at : new int[]{0, 1, 7}) {
                    double[] src = new double[n + 2];
                    for (int i = 0; i < src.length; i++)
                        src[i] = i % 5 == 0 ? SPECIAL[r.nextInt(SPECIAL.length)] : r.nextDouble(-1e3, 1e3) * Math.pow(2, r.nextInt(-40, 40));
                    MemorySegment seg = arena.allocate(4L * (n + at + 8));
                    ElementCodec.F32.write(seg, at, src, 2, n);
                    for (int i = 0; i < n; i++)
                        assertEquals(Float.floatToRawIntBits((float) src[2 + i]), Float.floatToRawIntBits(seg.getAtIndex(ElementCodec.FLOAT, at + i)),
                                "write n=" + n + " i=" + i + " value " + src[2 + i]);
                    double[] back = new double[n + 3];
                    ElementCodec.F32.read(seg, at, back, 3, n);
                    for (int i = 0; i < n; i++)
                        assertEquals(Double.doubleToRawLongBits((double) seg.getAtIndex(ElementCodec.FLOAT, at + i)),
                                Double.doubleToRawLongBits(back[3 + i]), "read n=" + n + " i=" + i);
                }
            }
        }
    }
}
