package dev.jsloth.cpu;

import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.fail;

/** The F32 codec's vector widening and narrowing give the scalar casts' bits, at awkward lengths and offsets. */
class ElementCodecTest {
    private static final double[] SPECIAL = {0, -0.0, 1e-45, -1e-45, 1.4e-45, 1e-40, -3e-39, 3.4028235e38, 3.5e38, -1e300,
            Double.MIN_VALUE, Double.POSITIVE_INFINITY, Double.NEGATIVE_INFINITY, Double.NaN, 1.0000000596046448,
            1.0000001788139343, 0.1, -2.5e-8};
    private static final int LONGEST = 4098;

    @Test
    void f32RunsMatchScalarCasts() {
        SplittableRandom r = new SplittableRandom(5);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment seg = arena.allocate(4L * (LONGEST + 16));
            // enough calls first that C2 compiles read and write (interpreted, the Vector API's conversions fall back to
            // the scalar casts, which would make the comparison trivially true), then every length and offset
            for (int rep = 0; rep < 3000; rep++) roundTrip(seg, r, LONGEST, rep % 3);
            for (int n : new int[]{1, 3, 4, 5, 13, 207, LONGEST})
                for (int at : new int[]{0, 1, 7}) roundTrip(seg, r, n, at);
        }
    }

    /** Writes n random and special values at element {@code at} of seg, reads them back, checks both against casts. */
    private static void roundTrip(MemorySegment seg, SplittableRandom r, int n, int at) {
        double[] src = new double[n + 2];
        for (int i = 0; i < src.length; i++)
            src[i] = i % 5 == 0 ? SPECIAL[r.nextInt(SPECIAL.length)] : r.nextDouble(-1e3, 1e3) * Math.pow(2, r.nextInt(-40, 40));
        ElementCodec.F32.write(seg, at, src, 2, n);
        for (int i = 0; i < n; i++)
            if (Float.floatToRawIntBits((float) src[2 + i]) != Float.floatToRawIntBits(seg.getAtIndex(ElementCodec.FLOAT, at + i)))
                fail("write n=" + n + " at=" + at + " i=" + i + " value " + src[2 + i]);
        double[] back = new double[n + 3];
        ElementCodec.F32.read(seg, at, back, 3, n);
        for (int i = 0; i < n; i++)
            if (Double.doubleToRawLongBits(seg.getAtIndex(ElementCodec.FLOAT, at + i)) != Double.doubleToRawLongBits(back[3 + i]))
                fail("read n=" + n + " at=" + at + " i=" + i);
    }
}
