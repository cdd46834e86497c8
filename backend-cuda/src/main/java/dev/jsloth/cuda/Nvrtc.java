package dev.jsloth.cuda;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static dev.jsloth.cuda.NativeFunctions.INT;
import static dev.jsloth.cuda.NativeFunctions.LONG;
import static dev.jsloth.cuda.NativeFunctions.PTR;
import static dev.jsloth.cuda.NativeFunctions.rethrow;

/**
 * Bindings to NVRTC, the runtime CUDA C++ compiler ({@code libnvrtc.so.13} or {@code .12}). {@link #compile}
 * turns one source with its headers into a CUBIN (for {@code sm_XY}) or PTX (for {@code compute_XY}), with the
 * lowered (mangled) names of the requested template instantiations; a failed compilation throws with the
 * program log.
 */
final class Nvrtc {
    static final List<String> LIBRARIES = List.of("libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so");

    /** The result of one compilation. */
    record Program(byte[] image, boolean cubin, Map<String, String> loweredNames, String log) {
    }

    private final NativeFunctions lib;
    private final MethodHandle nvrtcVersion, nvrtcGetErrorString, nvrtcCreateProgram, nvrtcDestroyProgram;
    private final MethodHandle nvrtcAddNameExpression, nvrtcCompileProgram, nvrtcGetLoweredName;
    private final MethodHandle nvrtcGetProgramLogSize, nvrtcGetProgramLog;
    private final MethodHandle nvrtcGetCUBINSize, nvrtcGetCUBIN, nvrtcGetPTXSize, nvrtcGetPTX;

    Nvrtc(NativeLibraries.Loaded library) {
        lib = new NativeFunctions(library, "NVRTC");
        nvrtcVersion = lib.bind("nvrtcVersion", FunctionDescriptor.of(INT, PTR, PTR));
        nvrtcGetErrorString = lib.bind("nvrtcGetErrorString", FunctionDescriptor.of(PTR, INT));
        nvrtcCreateProgram = lib.bind("nvrtcCreateProgram", FunctionDescriptor.of(INT, PTR, PTR, PTR, INT, PTR, PTR));
        nvrtcDestroyProgram = lib.bind("nvrtcDestroyProgram", FunctionDescriptor.of(INT, PTR));
        nvrtcAddNameExpression = lib.bind("nvrtcAddNameExpression", FunctionDescriptor.of(INT, PTR, PTR));
        nvrtcCompileProgram = lib.bind("nvrtcCompileProgram", FunctionDescriptor.of(INT, PTR, INT, PTR));
        nvrtcGetLoweredName = lib.bind("nvrtcGetLoweredName", FunctionDescriptor.of(INT, PTR, PTR, PTR));
        nvrtcGetProgramLogSize = lib.bind("nvrtcGetProgramLogSize", FunctionDescriptor.of(INT, PTR, PTR));
        nvrtcGetProgramLog = lib.bind("nvrtcGetProgramLog", FunctionDescriptor.of(INT, PTR, PTR));
        nvrtcGetCUBINSize = lib.bind("nvrtcGetCUBINSize", FunctionDescriptor.of(INT, PTR, PTR));
        nvrtcGetCUBIN = lib.bind("nvrtcGetCUBIN", FunctionDescriptor.of(INT, PTR, PTR));
        nvrtcGetPTXSize = lib.bind("nvrtcGetPTXSize", FunctionDescriptor.of(INT, PTR, PTR));
        nvrtcGetPTX = lib.bind("nvrtcGetPTX", FunctionDescriptor.of(INT, PTR, PTR));
    }

    String location() {
        return lib.location();
    }

    /** "major.minor". */
    String version() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment major = a.allocate(INT), minor = a.allocate(INT);
            check((int) nvrtcVersion.invokeExact(major, minor), "nvrtcVersion");
            return major.get(INT, 0) + "." + minor.get(INT, 0);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    String errorString(int result) {
        try {
            String s = NativeFunctions.cString((MemorySegment) nvrtcGetErrorString.invokeExact(result));
            return (s == null ? "NVRTC error" : s) + " (" + result + ")";
        } catch (Throwable t) {
            return "NVRTC error " + result;
        }
    }

    private void check(int result, String operation) {
        if (result != 0) throw new CudaException(operation + " failed: " + errorString(result), result);
    }

    /**
     * Compiles {@code source} (named {@code name} in diagnostics) with {@code headers} (include name to text) and
     * {@code options}; instantiates and lowers {@code nameExpressions}. A {@code --gpu-architecture=sm_XY} option
     * yields a CUBIN, {@code compute_XY} PTX.
     */
    Program compile(String name, String source, Map<String, String> headers, List<String> options, List<String> nameExpressions) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment progOut = a.allocate(PTR);
            List<String> headerNames = new ArrayList<>(headers.keySet());
            List<String> headerTexts = new ArrayList<>();
            for (String h : headerNames) headerTexts.add(headers.get(h));
            check((int) nvrtcCreateProgram.invokeExact(progOut, a.allocateFrom(source), a.allocateFrom(name), headerNames.size(),
                    NativeFunctions.cStrings(a, headerTexts), NativeFunctions.cStrings(a, headerNames)), "nvrtcCreateProgram(" + name + ")");
            MemorySegment prog = progOut.get(PTR, 0);
            try {
                for (String expr : nameExpressions)
                    check((int) nvrtcAddNameExpression.invokeExact(prog, a.allocateFrom(expr)), "nvrtcAddNameExpression(" + expr + ")");
                int result = (int) nvrtcCompileProgram.invokeExact(prog, options.size(), NativeFunctions.cStrings(a, options));
                String log = programLog(a, prog);
                if (result != 0)
                    throw new CudaException("nvrtcCompileProgram(" + name + ", " + options + ") failed: " + errorString(result)
                            + "\n" + log, result);
                boolean cubin = options.stream().anyMatch(o -> o.contains("sm_"));
                byte[] image = cubin ? output(a, prog, nvrtcGetCUBINSize, nvrtcGetCUBIN, "CUBIN")
                        : output(a, prog, nvrtcGetPTXSize, nvrtcGetPTX, "PTX");
                Map<String, String> lowered = new LinkedHashMap<>();
                for (String expr : nameExpressions) {
                    MemorySegment out = a.allocate(PTR);
                    check((int) nvrtcGetLoweredName.invokeExact(prog, a.allocateFrom(expr), out), "nvrtcGetLoweredName(" + expr + ")");
                    lowered.put(expr, NativeFunctions.cString(out.get(PTR, 0)));
                }
                return new Program(image, cubin, lowered, log);
            } finally {
                MemorySegment holder = a.allocate(PTR);
                holder.set(PTR, 0, prog);
                int ignored = (int) nvrtcDestroyProgram.invokeExact(holder);
            }
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    private String programLog(Arena a, MemorySegment prog) throws Throwable {
        MemorySegment size = a.allocate(LONG);
        if ((int) nvrtcGetProgramLogSize.invokeExact(prog, size) != 0) return "";
        long n = size.get(LONG, 0);
        if (n <= 1) return "";
        MemorySegment buf = a.allocate(n);
        if ((int) nvrtcGetProgramLog.invokeExact(prog, buf) != 0) return "";
        return buf.getString(0);
    }

    private byte[] output(Arena a, MemorySegment prog, MethodHandle sizeFn, MethodHandle getFn, String what) throws Throwable {
        MemorySegment size = a.allocate(LONG);
        check((int) sizeFn.invokeExact(prog, size), "nvrtcGet" + what + "Size");
        long n = size.get(LONG, 0);
        MemorySegment buf = a.allocate(Math.max(1, n));
        check((int) getFn.invokeExact(prog, buf), "nvrtcGet" + what);
        return buf.asSlice(0, n).toArray(java.lang.foreign.ValueLayout.JAVA_BYTE);
    }
}
