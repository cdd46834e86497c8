package dev.jsloth.cpu;

import org.junit.jupiter.api.Test;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class VectorMathTest {
    private static double ulps(double got, double want) {
        return Math.abs(got - want) / Math.ulp(want);
    }

    @Test
    void expIsWithinTwoUlpOfMathExp() {
        SplittableRandom r = new SplittableRandom(11);
        double[] x = new double[100_003];
        for (int i = 0; i < x.length; i++) x[i] = i % 3 == 0 ? r.nextDouble(-708, 709.7) : r.nextDouble(-30, 30);
        double[] e = x.clone();
        VectorMath.expInPlace(e, e.length);
        double worst = 0;
        for (int i = 0; i < x.length; i++) worst = Math.max(worst, ulps(e[i], Math.exp(x[i])));
        assertTrue(worst <= 2, "worst error " + worst + " ulp");
    }

    @Test
    void expEdgeValues() {
        double[] x = {0, -0.0, 1, -1, 709.78, 710, 1e300, Double.POSITIVE_INFINITY, -707.9, -709, -1e300,
                Double.NEGATIVE_INFINITY, Double.NaN};
        double[] e = x.clone();
        VectorMath.expInPlace(e, e.length);
        assertEquals(1.0, e[0]);
        assertEquals(1.0, e[1]);
        assertTrue(ulps(e[2], Math.E) <= 2);
        assertTrue(ulps(e[3], Math.exp(-1)) <= 2);
        assertTrue(ulps(e[4], Math.exp(709.78)) <= 2);
        assertEquals(Double.POSITIVE_INFINITY, e[5]);
        assertEquals(Double.POSITIVE_INFINITY, e[6]);
        assertEquals(Double.POSITIVE_INFINITY, e[7]);
        assertTrue(ulps(e[8], Math.exp(-707.9)) <= 2);
        assertEquals(0.0, e[9]);
        assertEquals(0.0, e[10]);
        assertEquals(0.0, e[11]);
        assertTrue(Double.isNaN(e[12]));
    }

    @Test
    void floatExpIsWithinTwoUlpOfMathExp() {
        SplittableRandom r = new SplittableRandom(12);
        float[] x = new float[100_003];
        for (int i = 0; i < x.length; i++) x[i] = (float) (i % 3 == 0 ? r.nextDouble(-86.4, 88.7) : r.nextDouble(-30, 30));
        x[0] = 0;
        x[1] = -86.4f;
        x[2] = 88.72f;
        float[] e = x.clone();
        VectorMath.expInPlace(e, 0, e.length);
        double worst = 0;
        for (int i = 0; i < x.length; i++) {
            float want = (float) Math.exp(x[i]);
            worst = Math.max(worst, Math.abs(e[i] - want) / Math.ulp(want));
        }
        assertTrue(worst <= 2, "worst error " + worst + " ulp");
        float[] edges = {-86.6f, -1e30f, Float.NEGATIVE_INFINITY, 88.73f, 1e30f, Float.POSITIVE_INFINITY, Float.NaN, 0f, -0f};
        VectorMath.expInPlace(edges, 0, edges.length);
        assertArrayEqualsF(new float[]{0, 0, 0, Float.POSITIVE_INFINITY, Float.POSITIVE_INFINITY, Float.POSITIVE_INFINITY, Float.NaN, 1, 1}, edges);
    }

    private static void assertArrayEqualsF(float[] want, float[] got) {
        for (int i = 0; i < want.length; i++) assertEquals(want[i], got[i], 0f, "element " + i);
    }
}
