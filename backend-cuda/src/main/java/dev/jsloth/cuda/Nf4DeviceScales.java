package dev.jsloth.cuda;

import dev.jsloth.api.quant.Nf4Scales;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * An NF4 tensor's block scales in device memory, in one allocator block: float32 values (4 bytes a 64-element
 * block), or kept double-quantized (a byte a block, plus the 256-entry code table and a float32 a 256 blocks), which
 * {@code nf4_dequantize_kernel} reconstructs as {@code codeValues[code] * nested[b / 256] + offset}, rounding the
 * product and then the sum to float32 as {@link Nf4Scales#values()} does. On the 8B QLoRA shape that is ~119 MB of
 * scales against ~470 MB.
 *
 * <p>Double-quantized layout: code table at 0 (1,024 bytes), nested scales at 1,024, codes after them.
 */
record Nf4DeviceScales(DeviceAllocator.Block block, long bytes, long values, long codes, long codeValues, long nested, float offset) {
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** Bytes of device memory the scales of {@code s} take. */
    static long bytesOf(Nf4Scales s) {
        if (!s.isDoubleQuantized()) return 4L * s.blocks();
        return 4L * 256 + 4L * s.nested().length + s.blocks();
    }

    /** Copies {@code s} into {@code block} (of {@link #bytesOf} bytes) and describes where each part lies. */
    static Nf4DeviceScales upload(CudaBackend be, DeviceAllocator.Block block, Nf4Scales s) {
        long bytes = bytesOf(s);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment host = a.allocate(Math.max(8, bytes), 8);
            long p = block.pointer();
            if (!s.isDoubleQuantized()) {
                float[] v = s.values();
                MemorySegment.copy(v, 0, host, F32, 0, v.length);
                be.toDevice(p, host, bytes);
                return new Nf4DeviceScales(block, bytes, p, 0, 0, 0, 0f);
            }
            float[] table = s.codeValues(), nested = s.nested();
            byte[] codes = s.codes();
            long nestedAt = 4L * 256, codesAt = nestedAt + 4L * nested.length;
            MemorySegment.copy(table, 0, host, F32, 0, 256);
            MemorySegment.copy(nested, 0, host, F32, nestedAt, nested.length);
            MemorySegment.copy(codes, 0, host, ValueLayout.JAVA_BYTE, codesAt, codes.length);
            be.toDevice(p, host, bytes);
            return new Nf4DeviceScales(block, bytes, 0, p + codesAt, p, p + nestedAt, s.offset());
        }
    }

    boolean doubleQuantized() {
        return codes != 0;
    }

    /** The kernel arguments after the packed codes: values, codes, code table, nested scales, offset. */
    LaunchArgs addTo(LaunchArgs args) {
        return args.ptr(values).ptr(codes).ptr(codeValues).ptr(nested).f32(offset);
    }
}
