package dev.jsloth.cpu;

import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

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

    /** {@code bytes} zeroed bytes (at least one is allocated so every tensor has a distinct address), or null if refused. */
    static MemorySegment calloc(long bytes) {
        MemorySegment p;
        try {
            p = (MemorySegment) CALLOC.invokeExact(1L, Math.max(1L, bytes));
        } catch (Throwable t) {
            throw new IllegalStateException("calloc failed", t);
        }
        if (p.equals(MemorySegment.NULL)) return null;
        return p.reinterpret(bytes);
    }

    static void free(MemorySegment p) {
        try {
            FREE.invokeExact(p);
        } catch (Throwable t) {
            throw new IllegalStateException("free failed", t);
        }
    }
}
