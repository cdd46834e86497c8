package dev.jsloth.cuda;

import dev.jsloth.api.DType;
import dev.jsloth.api.Shape;

/** Element-type conversion on the device: copies between storage types and NF4 dequantization. */
final class Conversions {
    private Conversions() {
    }

    /** Queues {@code dst[i] = src[i]} for n elements, converting {@code from} to {@code to} (a plain copy when equal). */
    static void convert(CudaBackend be, long src, ElementType from, long dst, ElementType to, long n) {
        if (n == 0) return;
        if (from == to) {
            be.copyDevice(dst, src, n * from.bytes);
            return;
        }
        be.kernel(KernelId.CONVERT, from, to).launch(Grid.linear(n), LaunchArgs.of().ptr(src).ptr(dst).i64(n));
    }

    /** Queues the dequantization of elements {@code [first, first+n)} of an NF4 tensor into {@code dst} of type {@code to}. */
    static void dequantize(CudaBackend be, CudaTensor nf4, long first, long n, long dst, ElementType to) {
        if (n == 0) return;
        // a thread per 32 elements where the kernel takes them whole (its own test: a multiple of 32 from 16-byte
        // aligned packed bytes into 16-byte aligned dst), else a thread an element
        boolean whole = first % 32 == 0 && (nf4.address() + first / 2) % 16 == 0 && dst % 16 == 0;
        be.kernel(KernelId.NF4_DEQUANTIZE, to).launch(Grid.linear(whole ? Math.ceilDiv(n, 32) : n),
                nf4.scales().addTo(LaunchArgs.of().ptr(nf4.address())).i64(first).i64(n).ptr(dst));
    }

    /** Queues writing elements {@code [first, first+n)} of a floating or NF4 tensor into {@code dst} as {@code to}. */
    static void read(CudaBackend be, CudaTensor src, long first, long n, long dst, ElementType to) {
        if (src.dtype() == DType.NF4) {
            dequantize(be, src, first, n, dst, to);
        } else {
            ElementType from = ElementType.of(src.dtype());
            convert(be, src.address() + first * from.bytes, from, dst, to, n);
        }
    }

    /** A new tensor holding {@code src}'s values as {@code to} (the caller closes it). */
    static CudaTensor copyAs(CudaBackend be, CudaTensor src, ElementType to, Shape shape) {
        CudaTensor out = be.allocateUninitialized(to.dtype, shape);
        read(be, src, 0, src.numel(), out.address(), to);
        return out;
    }
}
