package dev.jsloth.cpu;

import dev.jsloth.api.quant.Nf4;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;

/** {@link Nf4Codec#readFloats} (a byte at a time) gives {@link Nf4Codec#get}'s floats for any start and length. */
class Nf4CodecTest {
    @Test
    void runsReadAsTheElementsOneByOne() {
        SplittableRandom r = new SplittableRandom(3);
        int numel = 5 * Nf4.BLOCK + 2;
        float[] scales = new float[Nf4.blocks(numel)];
        for (int b = 0; b < scales.length; b++) scales[b] = (float) (0.1 + r.nextDouble());
        Nf4Codec codec = new Nf4Codec(scales);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment s = arena.allocate(numel / 2);
            for (long i = 0; i < s.byteSize(); i++) s.set(ValueLayout.JAVA_BYTE, i, (byte) r.nextInt(256));
            for (int start : new int[]{0, 1, 2, 63, 64, 65, 127, 200})
                for (int n : new int[]{0, 1, 2, 3, 62, 63, 64, 65, 129, numel - 200}) {
                    if (start + n > numel) continue;
                    float[] got = new float[n + 3];
                    codec.readFloats(s, start, got, 3, n);
                    for (int j = 0; j < n; j++)
                        assertEquals((float) codec.get(s, start + j), got[3 + j], 0f, "element " + (start + j) + " of a run from " + start + ", " + n + " long");
                }
        }
    }
}
