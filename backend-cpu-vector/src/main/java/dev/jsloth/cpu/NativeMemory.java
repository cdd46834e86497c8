package dev.jsloth.cpu;

import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static java.lang.foreign.ValueLayout.JAVA_LONG_UNALIGNED;

/**
 * Off-heap memory from the C allocator ({@code calloc}/{@code free}) through FFM downcalls: explicit, cheap to
 * free from any thread (unlike a shared arena's close), zero-filled on allocation.
 */
final class NativeMemory {
    private static final Linker LINKER = Linker.nativeLinker();
    private static final MethodHandle CALLOC = LINKER.downcallHandle(
            LINKER.defaultLookup().find("calloc").orElseThrow(),
            FunctionDescriptor.of(ADDRESS, JAVA_LONG, JAVA_LONG));
    private static final MethodHandle FREE = LINKER.downcallHandle(
            LINKER.defaultLookup().find("free").orElseThrow(),
            FunctionDescriptor.ofVoid(ADDRESS));

    private NativeMemory() {
    }

    /** Alignment of every tensor: a cache line, so vector rows of C do not straddle two lines. */
    static final long ALIGN = 64;

    /**
     * {@code bytes} zeroed bytes (at least one is allocated so every tensor has a distinct address), 64-byte aligned,
     * or null if refused. glibc's calloc returns 16-byte aligned blocks (large ones at page + 16), which split every
     * other 32-byte vector access over two cache lines: the block is over-allocated by 64 bytes and the pointer to
     * free is kept in the 8 bytes below the aligned address.
     */
    static MemorySegment calloc(long bytes) {
        long n = Math.max(1L, bytes) + ALIGN;
        MemorySegment p;
        try {
            p = (MemorySegment) CALLOC.invokeExact(1L, n);
        } catch (Throwable t) {
            throw new IllegalStateException("calloc failed", t);
        }
        if (p.equals(MemorySegment.NULL)) return null;
        long raw = p.address(), aligned = (raw + ALIGN) & -ALIGN; // at least 16 bytes above raw: room for the pointer
        p.reinterpret(n).set(JAVA_LONG_UNALIGNED, aligned - 8 - raw, raw);
        return MemorySegment.ofAddress(aligned).reinterpret(bytes);
    }

    /** Frees a block from {@link #calloc}, given the aligned segment it returned. */
    static void free(MemorySegment p) {
        long raw = MemorySegment.ofAddress(p.address() - 8).reinterpret(8).get(JAVA_LONG_UNALIGNED, 0);
        try {
            FREE.invokeExact(MemorySegment.ofAddress(raw));
        } catch (Throwable t) {
            throw new IllegalStateException("free failed", t);
        }
    }
}
