package dev.jsloth.cuda;

import dev.jsloth.api.DType;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The host-side pieces that need no GPU: type table, launch argument packing, embedding grouping, attention tiles. */
class HostSideTest {

    @Test
    void typeTableRoundsLikeTheCpuBackend() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(64);
            double[] values = {1 + Math.pow(2, -8), 1 + 3 * Math.pow(2, -8), -2.5, 1e-3, 65504, 1.0 / 3};
            for (double v : values) {
                ElementType.BF16.set(s, 0, v);
                float f = (float) v;
                int bits = Float.floatToIntBits(f), lower = bits & 0xFFFF, upper = bits & 0xFFFF0000;
                boolean up = lower > 0x8000 || (lower == 0x8000 && (upper & 0x10000) != 0);
                assertEquals(Float.intBitsToFloat(up ? upper + 0x10000 : upper), ElementType.BF16.get(s, 0), "bf16 " + v);
                ElementType.F16.set(s, 0, v);
                assertEquals(Float.float16ToFloat(Float.floatToFloat16(f)), ElementType.F16.get(s, 0), "f16 " + v);
                ElementType.F32.set(s, 0, v);
                assertEquals(f, ElementType.F32.get(s, 0));
                ElementType.F64.set(s, 0, v);
                assertEquals(v, ElementType.F64.get(s, 0));
            }
        }
        for (ElementType t : ElementType.values()) {
            assertEquals(t, ElementType.of(t.dtype));
            assertEquals(t.dtype.bits() / 8, t.bytes);
        }
        assertThrows(IllegalArgumentException.class, () -> ElementType.of(DType.NF4));
        assertEquals(ElementType.F32, ElementType.BF16.accumulator());
        assertEquals(ElementType.F64, ElementType.F64.accumulator());
    }

    @Test
    void launchArgumentsArePackedAsPointersToSlots() {
        LaunchArgs args = LaunchArgs.of().ptr(0x1234_5678_9abcL).i32(-7).i64(1L << 40).f64(0.5);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment p = args.pack(a);
            MemorySegment s0 = p.getAtIndex(ValueLayout.ADDRESS, 0).reinterpret(8);
            MemorySegment s1 = p.getAtIndex(ValueLayout.ADDRESS, 1).reinterpret(4);
            MemorySegment s2 = p.getAtIndex(ValueLayout.ADDRESS, 2).reinterpret(8);
            MemorySegment s3 = p.getAtIndex(ValueLayout.ADDRESS, 3).reinterpret(8);
            assertEquals(0x1234_5678_9abcL, s0.get(ValueLayout.JAVA_LONG, 0));
            assertEquals(-7, s1.get(ValueLayout.JAVA_INT, 0));
            assertEquals(1L << 40, s2.get(ValueLayout.JAVA_LONG, 0));
            assertEquals(0.5, s3.get(ValueLayout.JAVA_DOUBLE, 0));
            assertEquals(0, s0.address() % 8);
        }
    }

    @Test
    void embeddingPositionsAreGroupedByIdInOrder() {
        EmbeddingOp.Grouping g = EmbeddingOp.Grouping.of(new int[]{5, 2, 5, 0, 2, 5});
        assertArrayEquals(new int[]{0, 2, 5}, g.uniqueIds());
        assertArrayEquals(new int[]{0, 1, 3, 6}, g.starts());
        assertArrayEquals(new int[]{3, 1, 4, 0, 2, 5}, g.positions());
        EmbeddingOp.Grouping empty = EmbeddingOp.Grouping.of(new int[0]);
        assertEquals(0, empty.uniqueIds().length);
        assertArrayEquals(new int[]{0}, empty.starts());
    }

    @Test
    void attentionTilesFitTheSharedMemory() {
        long h100 = 227 * 1024;
        assertEquals(64, AttentionOp.Layout.FORWARD.tile(128, 4, h100, 64));
        assertTrue(AttentionOp.Layout.FORWARD.bytes(64, 128, 4) <= h100);
        assertEquals(32, AttentionOp.Layout.DKDV.tile(128, 8, h100, 64), "double needs smaller tiles");
        assertEquals(8, AttentionOp.Layout.FORWARD.tile(18, 8, h100, 8), "never larger than the sequence needs");
        for (AttentionOp.Layout l : AttentionOp.Layout.values())
            for (int d : new int[]{2, 64, 128, 256})
                for (int acc : new int[]{4, 8}) {
                    int t = l.tile(d, acc, h100, 64);
                    assertTrue(l.bytes(t, d, acc) <= h100 && t >= 1, l + " d=" + d + " acc=" + acc);
                }
        assertThrows(IllegalArgumentException.class, () -> AttentionOp.Layout.DKDV.tile(100_000, 8, h100, 64));
    }

    @Test
    void dkdvSplitsAGroupOnlyWhereTooFewBlocksWouldRun() {
        // 8B (8 kv heads, batch 2, 32 key tiles: 512 blocks) and tinyllama (4, 4, 32): one block per kv head's group
        assertEquals(1, FlashAttention.dkdvChunks(new dev.jsloth.api.AttentionDims(2, 2048, 32, 8, 128)));
        assertEquals(1, FlashAttention.dkdvChunks(new dev.jsloth.api.AttentionDims(4, 2048, 32, 4, 64)));
        // 2 kv heads, batch 1: 64 blocks; the group of 7 splits only into 7 (448 blocks)
        assertEquals(7, FlashAttention.dkdvChunks(new dev.jsloth.api.AttentionDims(1, 2048, 14, 2, 64)));
        // 1 kv head of 8, batch 1, 32 tiles: 2 chunks give 64 blocks, 4 give 128, 8 give 256
        assertEquals(8, FlashAttention.dkdvChunks(new dev.jsloth.api.AttentionDims(1, 2048, 8, 1, 128)));
        // 1 kv head of 8, batch 4, 32 tiles: 128 blocks, 2 chunks reach 256
        assertEquals(2, FlashAttention.dkdvChunks(new dev.jsloth.api.AttentionDims(4, 2048, 8, 1, 128)));
        assertEquals(1, FlashAttention.dkdvChunks(new dev.jsloth.api.AttentionDims(1, 13, 4, 4, 64)), "no group, no chunks");
    }

    @Test
    void reductionChunksCoverEveryRowOnce() {
        for (long rows : new long[]{0, 1, 31, 32, 33, 1000, 8191, 100_000, 10_000_000}) {
            Reductions.Chunking c = Reductions.Chunking.of(rows);
            assertTrue(c.chunks() >= 1 && c.chunks() <= 256, rows + " rows: " + c);
            assertTrue(c.rowsPerChunk() * c.chunks() >= rows, rows + " rows: " + c);
            assertTrue(c.rowsPerChunk() * (c.chunks() - 1) < Math.max(1, rows), rows + " rows: no empty trailing chunk " + c);
        }
    }

    @Test
    void catalogInstantiationsCoverEveryTypeCombination() {
        assertEquals(4, KernelId.ADD.instantiations().size());
        assertEquals(16, KernelId.CONVERT.instantiations().size());
        assertEquals("convert_kernel<bf16_t, double>", KernelId.CONVERT.nameExpression(List.of(ElementType.BF16, ElementType.F64)));
        assertThrows(IllegalArgumentException.class, () -> KernelId.ADD.nameExpression(List.of()));
        assertTrue(KernelId.files().containsAll(Arrays.asList("attention.cu", "elementwise.cu")));
    }

    @Test
    void cacheKeysChangeWithEveryInput() {
        String base = KernelCache.key("13.0", List.of("-a"), List.of("f<float>"), java.util.Map.of("h", "x"), "src");
        assertEquals(base, KernelCache.key("13.0", List.of("-a"), List.of("f<float>"), java.util.Map.of("h", "x"), "src"));
        assertTrue(!base.equals(KernelCache.key("12.9", List.of("-a"), List.of("f<float>"), java.util.Map.of("h", "x"), "src")));
        assertTrue(!base.equals(KernelCache.key("13.0", List.of("-b"), List.of("f<float>"), java.util.Map.of("h", "x"), "src")));
        assertTrue(!base.equals(KernelCache.key("13.0", List.of("-a"), List.of("f<double>"), java.util.Map.of("h", "x"), "src")));
        assertTrue(!base.equals(KernelCache.key("13.0", List.of("-a"), List.of("f<float>"), java.util.Map.of("h", "y"), "src")));
        assertTrue(!base.equals(KernelCache.key("13.0", List.of("-a"), List.of("f<float>"), java.util.Map.of("h", "x"), "src2")));
    }

    @Test
    void kernelCacheRoundTripsAProgram() throws Exception {
        java.nio.file.Path dir = java.nio.file.Files.createTempDirectory("jsloth-kernel-cache");
        KernelCache cache = new KernelCache(dir);
        Nvrtc.Program p = new Nvrtc.Program(new byte[]{1, 2, 3}, true, java.util.Map.of("f<float>", "_Z1fIfEvv"), "");
        assertTrue(cache.load("k").isEmpty());
        cache.store("k", p);
        Nvrtc.Program back = cache.load("k").orElseThrow();
        assertArrayEquals(p.image(), back.image());
        assertEquals(p.loweredNames(), back.loweredNames());
        assertTrue(back.cubin());
    }
}
