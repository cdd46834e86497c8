package dev.jsloth.cuda;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.util.List;
import java.util.Optional;

import static dev.jsloth.cuda.NativeFunctions.INT;
import static dev.jsloth.cuda.NativeFunctions.LONG;
import static dev.jsloth.cuda.NativeFunctions.PTR;
import static dev.jsloth.cuda.NativeFunctions.rethrow;

/**
 * FFM bindings to the NCCL calls data-parallel training uses ({@code libnccl.so.2}): the unique id, communicator
 * set-up and teardown, grouped all-reduce and broadcast on a CUDA stream. Every call is checked; errors carry
 * NCCL's own message and the operation.
 */
final class Nccl {
    static final List<String> LIBRARIES = List.of("libnccl.so.2", "libnccl.so");
    /** ncclUniqueId: an opaque 128-byte struct, passed by value to ncclCommInitRank. */
    static final int UNIQUE_ID_BYTES = 128;
    static final MemoryLayout UNIQUE_ID = MemoryLayout.structLayout(MemoryLayout.sequenceLayout(UNIQUE_ID_BYTES, ValueLayout.JAVA_BYTE));
    // ncclDataType_t and ncclRedOp_t values (nccl.h)
    static final int INT32 = 2, FLOAT16 = 6, FLOAT32 = 7, FLOAT64 = 8, BFLOAT16 = 9, SUM = 0;

    private final String location;
    private final MethodHandle getUniqueId, commInitRank, commDestroy, commAbort, allReduce, broadcast, groupStart, groupEnd, errorString,
            getVersion;

    private Nccl(NativeFunctions f) {
        location = f.location();
        getUniqueId = f.bind("ncclGetUniqueId", FunctionDescriptor.of(INT, PTR));
        commInitRank = f.bind("ncclCommInitRank", FunctionDescriptor.of(INT, PTR, INT, UNIQUE_ID, INT));
        commDestroy = f.bind("ncclCommDestroy", FunctionDescriptor.of(INT, PTR));
        commAbort = f.bind("ncclCommAbort", FunctionDescriptor.of(INT, PTR));
        allReduce = f.bind("ncclAllReduce", FunctionDescriptor.of(INT, LONG, LONG, LONG, INT, INT, PTR, PTR));
        broadcast = f.bind("ncclBroadcast", FunctionDescriptor.of(INT, LONG, LONG, LONG, INT, INT, PTR, PTR));
        groupStart = f.bind("ncclGroupStart", FunctionDescriptor.of(INT));
        groupEnd = f.bind("ncclGroupEnd", FunctionDescriptor.of(INT));
        errorString = f.bind("ncclGetErrorString", FunctionDescriptor.of(PTR, INT));
        getVersion = f.bind("ncclGetVersion", FunctionDescriptor.of(INT, PTR));
    }

    /** NCCL, if a library loads (the CUDA backend works without it; only multi-GPU training needs it). */
    static Optional<Nccl> load() {
        return NativeLibraries.load(LIBRARIES).map(l -> new Nccl(new NativeFunctions(l, "NCCL")));
    }

    String location() {
        return location;
    }

    private void check(int result, String operation) {
        if (result == 0) return;
        String text;
        try {
            text = NativeFunctions.cString((MemorySegment) errorString.invokeExact(result));
        } catch (Throwable t) {
            text = null;
        }
        throw new CudaException(operation + " failed: NCCL error " + result + (text == null ? "" : " (" + text + ")"), result);
    }

    /** "2.27.3" for NCCL_VERSION_CODE 22703. */
    String version() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment out = a.allocate(INT);
            check((int) getVersion.invokeExact(out), "ncclGetVersion");
            int v = out.get(INT, 0);
            return (v / 10000) + "." + (v / 100 % 100) + "." + (v % 100);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    byte[] uniqueId() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment id = a.allocate(UNIQUE_ID);
            check((int) getUniqueId.invokeExact(id), "ncclGetUniqueId");
            return id.toArray(ValueLayout.JAVA_BYTE);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** A communicator of {@code ranks} ranks for this rank, on the calling thread's current CUDA device. */
    MemorySegment initRank(int ranks, byte[] uniqueId, int rank) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment out = a.allocate(PTR);
            MemorySegment id = a.allocate(UNIQUE_ID);
            MemorySegment.copy(uniqueId, 0, id, ValueLayout.JAVA_BYTE, 0, UNIQUE_ID_BYTES);
            check((int) commInitRank.invokeExact(out, ranks, id, rank), "ncclCommInitRank(rank " + rank + " of " + ranks + ")");
            return out.get(PTR, 0);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    void destroy(MemorySegment comm) {
        try {
            check((int) commDestroy.invokeExact(comm), "ncclCommDestroy");
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** ncclCommAbort: frees the communicator and stops its operations still queued or running (a peer may be gone). */
    void abort(MemorySegment comm) {
        try {
            check((int) commAbort.invokeExact(comm), "ncclCommAbort");
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    void allReduceSum(long buffer, long count, int type, MemorySegment comm, MemorySegment stream) {
        try {
            check((int) allReduce.invokeExact(buffer, buffer, count, type, SUM, comm, stream), "ncclAllReduce(" + count + " elements)");
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    void broadcast(long buffer, long count, int type, int root, MemorySegment comm, MemorySegment stream) {
        try {
            check((int) broadcast.invokeExact(buffer, buffer, count, type, root, comm, stream), "ncclBroadcast(" + count + " elements)");
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    void groupStart() {
        try {
            check((int) groupStart.invokeExact(), "ncclGroupStart");
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    void groupEnd() {
        try {
            check((int) groupEnd.invokeExact(), "ncclGroupEnd");
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }
}
