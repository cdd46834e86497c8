package dev.jsloth.cuda;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;

import static dev.jsloth.cuda.NativeFunctions.FLOAT;
import static dev.jsloth.cuda.NativeFunctions.INT;
import static dev.jsloth.cuda.NativeFunctions.LONG;
import static dev.jsloth.cuda.NativeFunctions.PTR;
import static dev.jsloth.cuda.NativeFunctions.rethrow;

/**
 * Bindings to the CUDA driver API ({@code libcuda.so.1}) through FFM. Every call is checked: a failure throws
 * {@link CudaException} with the operation and {@code cuGetErrorName}/{@code cuGetErrorString}. Copies and memsets
 * use the stream-ordered ({@code Async}) entry points on the caller's stream; the caller synchronizes.
 */
final class CudaDriver {
    static final String LIBRARY = "libcuda.so.1";

    static final int ATTR_MAX_SHARED_MEMORY_PER_BLOCK = 8;
    static final int ATTR_MULTIPROCESSOR_COUNT = 16;
    static final int ATTR_COMPUTE_CAPABILITY_MAJOR = 75;
    static final int ATTR_COMPUTE_CAPABILITY_MINOR = 76;
    static final int ATTR_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97;
    static final int FUNC_ATTR_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8;
    static final int ERROR_OUT_OF_MEMORY = 2;

    private final NativeFunctions lib;
    private final MethodHandle cuInit, cuDriverGetVersion, cuGetErrorName, cuGetErrorString;
    private final MethodHandle cuDeviceGetCount, cuDeviceGet, cuDeviceGetName, cuDeviceGetAttribute, cuDeviceTotalMem;
    private final MethodHandle cuDevicePrimaryCtxRetain, cuDevicePrimaryCtxRelease, cuCtxSetCurrent;
    private final MethodHandle cuMemAlloc, cuMemFree, cuMemGetInfo;
    private final MethodHandle cuMemcpyHtoDAsync, cuMemcpyDtoHAsync, cuMemcpyDtoDAsync, cuMemsetD8Async;
    private final MethodHandle cuModuleLoadData, cuModuleGetFunction, cuModuleUnload, cuFuncSetAttribute, cuLaunchKernel;
    private final MethodHandle cuStreamCreate, cuStreamSynchronize, cuStreamDestroy;
    private final MethodHandle cuEventCreate, cuEventRecord, cuEventSynchronize, cuEventElapsedTime, cuEventDestroy;
    private final MethodHandle cuStreamWaitEvent;

    CudaDriver(NativeLibraries.Loaded library) {
        lib = new NativeFunctions(library, LIBRARY);
        cuInit = lib.bind("cuInit", FunctionDescriptor.of(INT, INT));
        cuDriverGetVersion = lib.bind("cuDriverGetVersion", FunctionDescriptor.of(INT, PTR));
        cuGetErrorName = lib.bind("cuGetErrorName", FunctionDescriptor.of(INT, INT, PTR));
        cuGetErrorString = lib.bind("cuGetErrorString", FunctionDescriptor.of(INT, INT, PTR));
        cuDeviceGetCount = lib.bind("cuDeviceGetCount", FunctionDescriptor.of(INT, PTR));
        cuDeviceGet = lib.bind("cuDeviceGet", FunctionDescriptor.of(INT, PTR, INT));
        cuDeviceGetName = lib.bind("cuDeviceGetName", FunctionDescriptor.of(INT, PTR, INT, INT));
        cuDeviceGetAttribute = lib.bind("cuDeviceGetAttribute", FunctionDescriptor.of(INT, PTR, INT, INT));
        cuDeviceTotalMem = lib.bind("cuDeviceTotalMem_v2", FunctionDescriptor.of(INT, PTR, INT));
        cuDevicePrimaryCtxRetain = lib.bind("cuDevicePrimaryCtxRetain", FunctionDescriptor.of(INT, PTR, INT));
        cuDevicePrimaryCtxRelease = lib.bind("cuDevicePrimaryCtxRelease_v2", FunctionDescriptor.of(INT, INT));
        cuCtxSetCurrent = lib.bind("cuCtxSetCurrent", FunctionDescriptor.of(INT, PTR));
        cuMemAlloc = lib.bind("cuMemAlloc_v2", FunctionDescriptor.of(INT, PTR, LONG));
        cuMemFree = lib.bind("cuMemFree_v2", FunctionDescriptor.of(INT, LONG));
        cuMemGetInfo = lib.bind("cuMemGetInfo_v2", FunctionDescriptor.of(INT, PTR, PTR));
        cuMemcpyHtoDAsync = lib.bind("cuMemcpyHtoDAsync_v2", FunctionDescriptor.of(INT, LONG, PTR, LONG, PTR));
        cuMemcpyDtoHAsync = lib.bind("cuMemcpyDtoHAsync_v2", FunctionDescriptor.of(INT, PTR, LONG, LONG, PTR));
        cuMemcpyDtoDAsync = lib.bind("cuMemcpyDtoDAsync_v2", FunctionDescriptor.of(INT, LONG, LONG, LONG, PTR));
        cuMemsetD8Async = lib.bind("cuMemsetD8Async", FunctionDescriptor.of(INT, LONG, ValueLayout.JAVA_BYTE, LONG, PTR));
        cuModuleLoadData = lib.bind("cuModuleLoadData", FunctionDescriptor.of(INT, PTR, PTR));
        cuModuleGetFunction = lib.bind("cuModuleGetFunction", FunctionDescriptor.of(INT, PTR, PTR, PTR));
        cuModuleUnload = lib.bind("cuModuleUnload", FunctionDescriptor.of(INT, PTR));
        cuFuncSetAttribute = lib.bind("cuFuncSetAttribute", FunctionDescriptor.of(INT, PTR, INT, INT));
        cuLaunchKernel = lib.bind("cuLaunchKernel",
                FunctionDescriptor.of(INT, PTR, INT, INT, INT, INT, INT, INT, INT, PTR, PTR, PTR));
        cuStreamCreate = lib.bind("cuStreamCreate", FunctionDescriptor.of(INT, PTR, INT));
        cuStreamSynchronize = lib.bind("cuStreamSynchronize", FunctionDescriptor.of(INT, PTR));
        cuStreamDestroy = lib.bind("cuStreamDestroy_v2", FunctionDescriptor.of(INT, PTR));
        cuEventCreate = lib.bind("cuEventCreate", FunctionDescriptor.of(INT, PTR, INT));
        cuEventRecord = lib.bind("cuEventRecord", FunctionDescriptor.of(INT, PTR, PTR));
        cuEventSynchronize = lib.bind("cuEventSynchronize", FunctionDescriptor.of(INT, PTR));
        FunctionDescriptor elapsed = FunctionDescriptor.of(INT, PTR, PTR, PTR);
        cuEventElapsedTime = lib.optional("cuEventElapsedTime_v2", elapsed).orElseGet(() -> lib.bind("cuEventElapsedTime", elapsed));
        cuEventDestroy = lib.bind("cuEventDestroy_v2", FunctionDescriptor.of(INT, PTR));
        cuStreamWaitEvent = lib.bind("cuStreamWaitEvent", FunctionDescriptor.of(INT, PTR, PTR, INT));
    }

    String location() {
        return lib.location();
    }

    // ---------------------------------------------------------------- errors

    /** "CUDA_ERROR_X (n): description" for a CUresult. */
    String describe(int result) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment out = a.allocate(PTR);
            String name = (int) cuGetErrorName.invokeExact(result, out) == 0 ? NativeFunctions.cString(out.get(PTR, 0)) : null;
            String text = (int) cuGetErrorString.invokeExact(result, out) == 0 ? NativeFunctions.cString(out.get(PTR, 0)) : null;
            return (name == null ? "CUDA error" : name) + " (" + result + ")" + (text == null ? "" : ": " + text);
        } catch (Throwable t) {
            return "CUDA error " + result;
        }
    }

    private void check(int result, String operation) {
        if (result != 0) throw new CudaException(operation + " failed: " + describe(result), result);
    }

    // ---------------------------------------------------------------- initialisation and devices

    /** cuInit(0); returns the CUresult instead of throwing, for the availability check. */
    int init() {
        return NativeFunctions.status(() -> (int) cuInit.invokeExact(0));
    }

    /** The driver's CUDA version as major*1000 + minor*10. */
    int driverVersion() {
        return intOut("cuDriverGetVersion", out -> (int) cuDriverGetVersion.invokeExact(out));
    }

    int deviceCount() {
        return intOut("cuDeviceGetCount", out -> (int) cuDeviceGetCount.invokeExact(out));
    }

    int device(int ordinal) {
        return intOut("cuDeviceGet(" + ordinal + ")", out -> (int) cuDeviceGet.invokeExact(out, ordinal));
    }

    String deviceName(int device) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(256);
            check((int) cuDeviceGetName.invokeExact(buf, 256, device), "cuDeviceGetName");
            return buf.getString(0);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    int attribute(int attribute, int device) {
        return intOut("cuDeviceGetAttribute(" + attribute + ")", out -> (int) cuDeviceGetAttribute.invokeExact(out, attribute, device));
    }

    long totalMemory(int device) {
        return longOut("cuDeviceTotalMem", out -> (int) cuDeviceTotalMem.invokeExact(out, device));
    }

    MemorySegment retainPrimaryContext(int device) {
        return pointerOut("cuDevicePrimaryCtxRetain", out -> (int) cuDevicePrimaryCtxRetain.invokeExact(out, device));
    }

    void releasePrimaryContext(int device) {
        call("cuDevicePrimaryCtxRelease", () -> (int) cuDevicePrimaryCtxRelease.invokeExact(device));
    }

    void setCurrent(MemorySegment context) {
        call("cuCtxSetCurrent", () -> (int) cuCtxSetCurrent.invokeExact(context));
    }

    // ---------------------------------------------------------------- memory

    long memAlloc(long bytes) {
        return longOut("cuMemAlloc(" + bytes + " bytes)", out -> (int) cuMemAlloc.invokeExact(out, bytes));
    }

    void memFree(long pointer) {
        call("cuMemFree", () -> (int) cuMemFree.invokeExact(pointer));
    }

    /** {free, total} bytes of device memory. */
    long[] memInfo() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment free = a.allocate(LONG), total = a.allocate(LONG);
            check((int) cuMemGetInfo.invokeExact(free, total), "cuMemGetInfo");
            return new long[]{free.get(LONG, 0), total.get(LONG, 0)};
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /**
     * Host to device. A heap segment (e.g. {@code MemorySegment.ofArray}) cannot cross a downcall, so it is staged
     * through native memory; pageable sources are consumed before the call returns, so the staging can be freed.
     */
    void copyHostToDevice(long dst, MemorySegment src, long bytes, MemorySegment stream) {
        if (!src.isNative()) {
            try (Arena a = Arena.ofConfined()) {
                MemorySegment staged = a.allocate(Math.max(1, bytes));
                MemorySegment.copy(src, 0, staged, 0, bytes);
                copyHostToDevice(dst, staged, bytes, stream);
            }
            return;
        }
        call("cuMemcpyHtoDAsync(" + bytes + " bytes)", () -> (int) cuMemcpyHtoDAsync.invokeExact(dst, src, bytes, stream));
    }

    /** Device to host; a heap destination is filled through native staging (the copy completes before return). */
    void copyDeviceToHost(MemorySegment dst, long src, long bytes, MemorySegment stream) {
        if (!dst.isNative()) {
            try (Arena a = Arena.ofConfined()) {
                MemorySegment staged = a.allocate(Math.max(1, bytes));
                copyDeviceToHost(staged, src, bytes, stream);
                MemorySegment.copy(staged, 0, dst, 0, bytes);
            }
            return;
        }
        call("cuMemcpyDtoHAsync(" + bytes + " bytes)", () -> (int) cuMemcpyDtoHAsync.invokeExact(dst, src, bytes, stream));
    }

    void copyDeviceToDevice(long dst, long src, long bytes, MemorySegment stream) {
        call("cuMemcpyDtoDAsync(" + bytes + " bytes)", () -> (int) cuMemcpyDtoDAsync.invokeExact(dst, src, bytes, stream));
    }

    void memsetBytes(long dst, byte value, long bytes, MemorySegment stream) {
        call("cuMemsetD8Async(" + bytes + " bytes)", () -> (int) cuMemsetD8Async.invokeExact(dst, value, bytes, stream));
    }

    // ---------------------------------------------------------------- modules and launches

    MemorySegment loadModule(MemorySegment image, String what) {
        return pointerOut("cuModuleLoadData(" + what + ")", out -> (int) cuModuleLoadData.invokeExact(out, image));
    }

    void unloadModule(MemorySegment module) {
        call("cuModuleUnload", () -> (int) cuModuleUnload.invokeExact(module));
    }

    MemorySegment function(MemorySegment module, String name) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment cName = a.allocateFrom(name);
            return pointerOut("cuModuleGetFunction(" + name + ")", out -> (int) cuModuleGetFunction.invokeExact(out, module, cName));
        }
    }

    void setFunctionAttribute(MemorySegment function, int attribute, int value, String what) {
        call("cuFuncSetAttribute(" + what + ", " + attribute + ", " + value + ")",
                () -> (int) cuFuncSetAttribute.invokeExact(function, attribute, value));
    }

    void launch(MemorySegment function, int gx, int gy, int gz, int bx, int by, int bz, int sharedBytes,
                MemorySegment stream, MemorySegment params, String what) {
        int result;
        try {
            result = (int) cuLaunchKernel.invokeExact(function, gx, gy, gz, bx, by, bz, sharedBytes, stream, params, MemorySegment.NULL);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        if (result != 0) // the description is built only for an error: launches are the hot path
            check(result, "cuLaunchKernel(" + what + ", grid " + gx + "x" + gy + "x" + gz + ", block " + bx + "x" + by + "x" + bz
                    + ", " + sharedBytes + " B shared)");
    }

    // ---------------------------------------------------------------- streams and events

    MemorySegment createStream() {
        return pointerOut("cuStreamCreate", out -> (int) cuStreamCreate.invokeExact(out, 0));
    }

    void synchronize(MemorySegment stream) {
        call("cuStreamSynchronize", () -> (int) cuStreamSynchronize.invokeExact(stream));
    }

    void destroyStream(MemorySegment stream) {
        call("cuStreamDestroy", () -> (int) cuStreamDestroy.invokeExact(stream));
    }

    MemorySegment createEvent() {
        return pointerOut("cuEventCreate", out -> (int) cuEventCreate.invokeExact(out, 0));
    }

    void record(MemorySegment event, MemorySegment stream) {
        call("cuEventRecord", () -> (int) cuEventRecord.invokeExact(event, stream));
    }

    void synchronizeEvent(MemorySegment event) {
        call("cuEventSynchronize", () -> (int) cuEventSynchronize.invokeExact(event));
    }

    float elapsedMillis(MemorySegment start, MemorySegment end) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment out = a.allocate(FLOAT);
            check((int) cuEventElapsedTime.invokeExact(out, start, end), "cuEventElapsedTime");
            return out.get(FLOAT, 0);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** Work queued on {@code stream} from now on waits for {@code event} (recorded on another stream). */
    void waitEvent(MemorySegment stream, MemorySegment event) {
        call("cuStreamWaitEvent", () -> (int) cuStreamWaitEvent.invokeExact(stream, event, 0));
    }

    void destroyEvent(MemorySegment event) {
        call("cuEventDestroy", () -> (int) cuEventDestroy.invokeExact(event));
    }

    // ---------------------------------------------------------------- call helpers

    private void call(String operation, NativeFunctions.Call c) {
        check(NativeFunctions.status(c), operation);
    }

    /** Runs a call that writes one value of {@code layout} through an out-pointer; returns that slot. */
    private MemorySegment out(String operation, MemoryLayout layout, Arena a, NativeFunctions.OutCall c) {
        MemorySegment out = a.allocate(layout);
        call(operation, () -> c.invoke(out));
        return out;
    }

    private int intOut(String operation, NativeFunctions.OutCall c) {
        try (Arena a = Arena.ofConfined()) {
            return out(operation, INT, a, c).get(INT, 0);
        }
    }

    private long longOut(String operation, NativeFunctions.OutCall c) {
        try (Arena a = Arena.ofConfined()) {
            return out(operation, LONG, a, c).get(LONG, 0);
        }
    }

    private MemorySegment pointerOut(String operation, NativeFunctions.OutCall c) {
        try (Arena a = Arena.ofConfined()) {
            return out(operation, PTR, a, c).get(PTR, 0);
        }
    }
}
