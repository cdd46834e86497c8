package dev.jsloth.api.quant;

import org.junit.jupiter.api.Test;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class Nf4ScalesTest {
    private static float[] weights(int n, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        float[] w = new float[n];
        for (int i = 0; i < n; i++) w[i] = (float) (r.nextGaussian() * (0.01 + (i / 4096) * 0.02));
        return w;
    }

    @Test
    void storedFormsReconstructWhatDequantizationUses() {
        float[] w = weights(64 * 700, 3); // 700 blocks: 3 nested blocks, the last one partial
        Nf4Weight dq = Nf4.quantize(w, true), plain = Nf4.quantize(w, false);
        Nf4Scales s = dq.scales();
        assertTrue(s.isDoubleQuantized());
        assertEquals(700, s.blocks());
        assertEquals(3, s.nested().length);
        assertArrayEquals(dq.blockScales(), s.values());
        assertArrayEquals(dq.absmaxCodes(), s.codes());
        assertEquals(dq.offset(), s.offset());
        Nf4Scales p = plain.scales();
        assertFalse(p.isDoubleQuantized());
        assertArrayEquals(plain.absmax(), p.values());
        assertThrows(IllegalStateException.class, p::codes);
    }

    @Test
    void badPartsAreRefused() {
        byte[] codes = new byte[300];
        assertThrows(IllegalArgumentException.class, () -> Nf4Scales.doubleQuantized(codes, new float[255], new float[2], 0f));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> Nf4Scales.doubleQuantized(codes, DynamicMap.SIGNED, new float[1], 0f));
        assertTrue(e.getMessage().contains("need 2 nested scales"), e.getMessage());
    }

    @Test
    void theCallersArraysAreCopied() {
        float[] absmax = {1f, 2f};
        Nf4Scales s = Nf4Scales.plain(absmax);
        absmax[0] = 9f;
        assertEquals(1f, s.values()[0]);
        s.values()[1] = 7f;
        assertEquals(2f, s.values()[1]);
    }
}
