package dev.jsloth.cuda;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;
import java.util.Map;
import java.util.Optional;

import static dev.jsloth.cuda.NativeFunctions.INT;
import static dev.jsloth.cuda.NativeFunctions.LONG;
import static dev.jsloth.cuda.NativeFunctions.PTR;
import static dev.jsloth.cuda.NativeFunctions.rethrow;

/**
 * Bindings to cuBLASLt ({@code libcublasLt.so.13} or {@code .12}): handle, matmul descriptors, matrix layouts,
 * preferences, the algorithm heuristic and {@code cublasLtMatmul}. Failures throw {@link CudaException} with the
 * status name ({@code cublasLtGetStatusName}, or this class's table when the library lacks it).
 */
final class CublasLt {
    /** The candidate library names, newest first. */
    static final java.util.List<String> LIBRARIES = java.util.List.of("libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so");

    static final int COMPUTE_32F = 68;
    static final int COMPUTE_64F = 70;
    static final int OP_N = 0;
    static final int OP_T = 1;
    static final int DESC_TRANSA = 3;
    static final int DESC_TRANSB = 4;
    static final int LAYOUT_BATCH_COUNT = 5;
    static final int LAYOUT_STRIDED_BATCH_OFFSET = 6;
    static final int PREF_MAX_WORKSPACE_BYTES = 1;
    /** CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_{A,B,C,D}_BYTES: 5, 6, 7, 8 (uint32, default 256). */
    static final int PREF_MIN_ALIGNMENT_A_BYTES = 5;
    /** sizeof(cublasLtMatmulHeuristicResult_t): algo (64 bytes), workspaceSize, state, wavesCount, reserved[4]. */
    static final long HEURISTIC_RESULT_BYTES = 96;
    static final long ALGO_BYTES = 64;

    private static final Map<Integer, String> STATUS_NAMES = Map.ofEntries(
            Map.entry(0, "CUBLAS_STATUS_SUCCESS"), Map.entry(1, "CUBLAS_STATUS_NOT_INITIALIZED"),
            Map.entry(3, "CUBLAS_STATUS_ALLOC_FAILED"), Map.entry(7, "CUBLAS_STATUS_INVALID_VALUE"),
            Map.entry(8, "CUBLAS_STATUS_ARCH_MISMATCH"), Map.entry(11, "CUBLAS_STATUS_MAPPING_ERROR"),
            Map.entry(13, "CUBLAS_STATUS_EXECUTION_FAILED"), Map.entry(14, "CUBLAS_STATUS_INTERNAL_ERROR"),
            Map.entry(15, "CUBLAS_STATUS_NOT_SUPPORTED"), Map.entry(16, "CUBLAS_STATUS_LICENSE_ERROR"));

    private final NativeFunctions lib;
    private final MethodHandle create, destroy, getVersion;
    private final Optional<MethodHandle> getStatusName;
    private final MethodHandle descCreate, descDestroy, descSetAttribute;
    private final MethodHandle layoutCreate, layoutDestroy, layoutSetAttribute;
    private final MethodHandle prefCreate, prefDestroy, prefSetAttribute;
    private final MethodHandle heuristic, matmul;

    CublasLt(NativeLibraries.Loaded library) {
        lib = new NativeFunctions(library, "cuBLASLt");
        create = lib.bind("cublasLtCreate", FunctionDescriptor.of(INT, PTR));
        destroy = lib.bind("cublasLtDestroy", FunctionDescriptor.of(INT, PTR));
        getVersion = lib.bind("cublasLtGetVersion", FunctionDescriptor.of(LONG));
        getStatusName = lib.optional("cublasLtGetStatusName", FunctionDescriptor.of(PTR, INT));
        descCreate = lib.bind("cublasLtMatmulDescCreate", FunctionDescriptor.of(INT, PTR, INT, INT));
        descDestroy = lib.bind("cublasLtMatmulDescDestroy", FunctionDescriptor.of(INT, PTR));
        descSetAttribute = lib.bind("cublasLtMatmulDescSetAttribute", FunctionDescriptor.of(INT, PTR, INT, PTR, LONG));
        layoutCreate = lib.bind("cublasLtMatrixLayoutCreate", FunctionDescriptor.of(INT, PTR, INT, LONG, LONG, LONG));
        layoutDestroy = lib.bind("cublasLtMatrixLayoutDestroy", FunctionDescriptor.of(INT, PTR));
        layoutSetAttribute = lib.bind("cublasLtMatrixLayoutSetAttribute", FunctionDescriptor.of(INT, PTR, INT, PTR, LONG));
        prefCreate = lib.bind("cublasLtMatmulPreferenceCreate", FunctionDescriptor.of(INT, PTR));
        prefDestroy = lib.bind("cublasLtMatmulPreferenceDestroy", FunctionDescriptor.of(INT, PTR));
        prefSetAttribute = lib.bind("cublasLtMatmulPreferenceSetAttribute", FunctionDescriptor.of(INT, PTR, INT, PTR, LONG));
        heuristic = lib.bind("cublasLtMatmulAlgoGetHeuristic",
                FunctionDescriptor.of(INT, PTR, PTR, PTR, PTR, PTR, PTR, PTR, INT, PTR, PTR));
        matmul = lib.bind("cublasLtMatmul", FunctionDescriptor.of(INT, PTR, PTR, PTR, LONG, PTR, LONG, PTR, PTR,
                LONG, PTR, LONG, PTR, PTR, LONG, LONG, PTR));
    }

    String location() {
        return lib.location();
    }

    long version() {
        try {
            return (long) getVersion.invokeExact();
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    String statusName(int status) {
        String name = null;
        if (getStatusName.isPresent()) {
            try {
                name = NativeFunctions.cString((MemorySegment) getStatusName.get().invokeExact(status));
            } catch (Throwable ignored) {
                // fall back to the table
            }
        }
        if (name == null) name = STATUS_NAMES.getOrDefault(status, "CUBLAS_STATUS_" + status);
        return name + " (" + status + ")";
    }

    private void check(int status, String operation) {
        if (status != 0) throw new CudaException(operation + " failed: " + statusName(status), status);
    }

    MemorySegment createHandle() {
        return pointerOut("cublasLtCreate", out -> (int) create.invokeExact(out));
    }

    void destroyHandle(MemorySegment handle) {
        call("cublasLtDestroy", () -> (int) destroy.invokeExact(handle));
    }

    MemorySegment createMatmulDesc(int computeType, int scaleType) {
        return pointerOut("cublasLtMatmulDescCreate", out -> (int) descCreate.invokeExact(out, computeType, scaleType));
    }

    void setMatmulDescInt(MemorySegment desc, int attribute, int value) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocateFrom(INT, value);
            call("cublasLtMatmulDescSetAttribute(" + attribute + ")", () -> (int) descSetAttribute.invokeExact(desc, attribute, v, 4L));
        }
    }

    void destroyMatmulDesc(MemorySegment desc) {
        call("cublasLtMatmulDescDestroy", () -> (int) descDestroy.invokeExact(desc));
    }

    /** A column-major {@code rows x cols} layout with leading dimension {@code ld}, of cudaDataType {@code type}. */
    MemorySegment createLayout(int type, long rows, long cols, long ld) {
        return pointerOut("cublasLtMatrixLayoutCreate(" + rows + "x" + cols + ", ld " + ld + ")",
                out -> (int) layoutCreate.invokeExact(out, type, rows, cols, ld));
    }

    /** Strided batching: {@code count} matrices {@code stride} elements apart. */
    void setBatch(MemorySegment layout, int count, long stride) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment c = a.allocateFrom(INT, count);
            MemorySegment s = a.allocateFrom(LONG, stride);
            call("cublasLtMatrixLayoutSetAttribute(BATCH_COUNT)",
                    () -> (int) layoutSetAttribute.invokeExact(layout, LAYOUT_BATCH_COUNT, c, 4L));
            call("cublasLtMatrixLayoutSetAttribute(STRIDED_BATCH_OFFSET)",
                    () -> (int) layoutSetAttribute.invokeExact(layout, LAYOUT_STRIDED_BATCH_OFFSET, s, 8L));
        }
    }

    void destroyLayout(MemorySegment layout) {
        call("cublasLtMatrixLayoutDestroy", () -> (int) layoutDestroy.invokeExact(layout));
    }

    /**
     * A preference allowing {@code maxWorkspaceBytes} of workspace and promising the given minimum alignments (in
     * bytes) of A, B, C and D, so that the heuristic only picks algorithms that work with them.
     */
    MemorySegment createPreference(long maxWorkspaceBytes, int[] alignments) {
        MemorySegment pref = pointerOut("cublasLtMatmulPreferenceCreate", out -> (int) prefCreate.invokeExact(out));
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocateFrom(LONG, maxWorkspaceBytes);
            call("cublasLtMatmulPreferenceSetAttribute(MAX_WORKSPACE_BYTES)",
                    () -> (int) prefSetAttribute.invokeExact(pref, PREF_MAX_WORKSPACE_BYTES, v, 8L));
            for (int i = 0; i < 4; i++) {
                int attribute = PREF_MIN_ALIGNMENT_A_BYTES + i;
                MemorySegment align = a.allocateFrom(INT, alignments[i]);
                call("cublasLtMatmulPreferenceSetAttribute(MIN_ALIGNMENT " + "ABCD".charAt(i) + ")",
                        () -> (int) prefSetAttribute.invokeExact(pref, attribute, align, 4L));
            }
        }
        return pref;
    }

    void destroyPreference(MemorySegment pref) {
        call("cublasLtMatmulPreferenceDestroy", () -> (int) prefDestroy.invokeExact(pref));
    }

    /** One algorithm the heuristic offers: its opaque description ({@link #ALGO_BYTES}) and workspace need. */
    record Candidate(MemorySegment algo, long workspaceBytes) {
    }

    /**
     * Up to {@code requested} algorithms for the problem, the heuristic's best first (descriptions allocated in
     * {@code into}). Throws when none supports the problem.
     */
    java.util.List<Candidate> algorithms(MemorySegment handle, MemorySegment desc, MemorySegment a, MemorySegment b, MemorySegment c,
                                         MemorySegment d, MemorySegment pref, int requested, Arena into, String what) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment results = arena.allocate(HEURISTIC_RESULT_BYTES * requested, 16);
            MemorySegment count = arena.allocate(INT);
            call("cublasLtMatmulAlgoGetHeuristic(" + what + ")",
                    () -> (int) heuristic.invokeExact(handle, desc, a, b, c, d, pref, requested, results, count));
            java.util.List<Candidate> out = new java.util.ArrayList<>();
            for (int i = 0; i < count.get(INT, 0); i++) {
                long base = i * HEURISTIC_RESULT_BYTES;
                if (results.get(INT, base + ALGO_BYTES + 8) != 0) continue; // this one does not apply
                MemorySegment algo = into.allocate(ALGO_BYTES, 16);
                MemorySegment.copy(results, base, algo, 0, ALGO_BYTES);
                out.add(new Candidate(algo, results.get(LONG, base + ALGO_BYTES)));
            }
            if (out.isEmpty())
                throw new CudaException("cublasLtMatmulAlgoGetHeuristic(" + what + ") found no algorithm: " + statusName(15));
            return out;
        }
    }

    /**
     * D = alpha * op(A) op(B) + beta * C; returns the cuBLASLt status instead of throwing (for trying candidate
     * algorithms, some of which may refuse a problem at run time).
     */
    int tryMatmul(MemorySegment handle, MemorySegment desc, MemorySegment alpha, long a, MemorySegment aDesc, long b,
                  MemorySegment bDesc, MemorySegment beta, long c, MemorySegment cDesc, long d, MemorySegment dDesc,
                  MemorySegment algo, long workspace, long workspaceBytes, MemorySegment stream) {
        return NativeFunctions.status(() -> (int) matmul.invokeExact(handle, desc, alpha, a, aDesc, b, bDesc, beta, c, cDesc, d, dDesc,
                algo, workspace, workspaceBytes, stream));
    }

    /** D = alpha * op(A) op(B) + beta * C (cuBLAS's column-major convention); alpha, beta are host pointers. */
    void matmul(MemorySegment handle, MemorySegment desc, MemorySegment alpha, long a, MemorySegment aDesc, long b,
                MemorySegment bDesc, MemorySegment beta, long c, MemorySegment cDesc, long d, MemorySegment dDesc,
                MemorySegment algo, long workspace, long workspaceBytes, MemorySegment stream, String what) {
        int status = tryMatmul(handle, desc, alpha, a, aDesc, b, bDesc, beta, c, cDesc, d, dDesc, algo, workspace, workspaceBytes, stream);
        if (status != 0) check(status, "cublasLtMatmul(" + what + ")"); // the text only for an error: the hot path
    }

    private void call(String operation, NativeFunctions.Call c) {
        check(NativeFunctions.status(c), operation);
    }

    private MemorySegment pointerOut(String operation, NativeFunctions.OutCall c) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment out = a.allocate(PTR);
            call(operation, () -> c.invoke(out));
            return out.get(PTR, 0);
        }
    }
}
