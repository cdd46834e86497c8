package dev.jsloth.cuda;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.util.Optional;

/** Downcall handles into one loaded library, and the small FFM helpers the bindings share. */
final class NativeFunctions {
    static final Linker LINKER = Linker.nativeLinker();
    static final ValueLayout.OfInt INT = ValueLayout.JAVA_INT;
    static final ValueLayout.OfLong LONG = ValueLayout.JAVA_LONG;
    static final ValueLayout.OfFloat FLOAT = ValueLayout.JAVA_FLOAT;
    static final ValueLayout.OfDouble DOUBLE = ValueLayout.JAVA_DOUBLE;
    static final java.lang.foreign.AddressLayout PTR = ValueLayout.ADDRESS;

    private final NativeLibraries.Loaded library;
    private final String name;

    NativeFunctions(NativeLibraries.Loaded library, String name) {
        this.library = library;
        this.name = name;
    }

    String location() {
        return library.location();
    }

    /** The function {@code symbol}; a missing symbol is an error naming the library. */
    MethodHandle bind(String symbol, FunctionDescriptor fd) {
        return optional(symbol, fd).orElseThrow(() ->
                new CudaException(name + " (" + library.location() + ") has no function " + symbol + "; the library is too old"));
    }

    Optional<MethodHandle> optional(String symbol, FunctionDescriptor fd) {
        return library.lookup().find(symbol).map(s -> LINKER.downcallHandle(s, fd));
    }

    /** The NUL-terminated C string at {@code address}, or null for NULL. */
    static String cString(MemorySegment address) {
        if (address == null || address.equals(MemorySegment.NULL)) return null;
        return address.reinterpret(Long.MAX_VALUE).getString(0);
    }

    /** An array of C strings, for {@code const char* const*} parameters. */
    static MemorySegment cStrings(Arena arena, java.util.List<String> values) {
        MemorySegment array = arena.allocate(PTR, Math.max(1, values.size()));
        for (int i = 0; i < values.size(); i++) array.setAtIndex(PTR, i, arena.allocateFrom(values.get(i)));
        return array;
    }

    /** A native call returning a status code (MethodHandle invocations declare Throwable). */
    @FunctionalInterface
    interface Call {
        int invoke() throws Throwable;
    }

    /** A native call that writes its result through the out-pointer it is given and returns a status code. */
    @FunctionalInterface
    interface OutCall {
        int invoke(MemorySegment out) throws Throwable;
    }

    /** Runs {@code c} and returns its status; what the invocation throws is rethrown ({@link #rethrow}). */
    static int status(Call c) {
        try {
            return c.invoke();
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** Rethrows what a MethodHandle invocation threw: unchecked as is, checked wrapped. */
    static RuntimeException rethrow(Throwable t) {
        if (t instanceof RuntimeException r) return r;
        if (t instanceof Error e) throw e;
        return new IllegalStateException(t);
    }
}
