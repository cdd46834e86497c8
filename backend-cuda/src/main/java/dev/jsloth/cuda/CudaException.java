package dev.jsloth.cuda;

/**
 * A failed call into a CUDA library: the message names the operation and the library's own name for the error
 * (e.g. {@code cuMemAlloc(1024 bytes) failed: CUDA_ERROR_OUT_OF_MEMORY (2): out of memory}).
 */
public class CudaException extends RuntimeException {
    private final int code;

    public CudaException(String message) {
        this(message, 0);
    }

    public CudaException(String message, int code) {
        super(message);
        this.code = code;
    }

    /** The library's numeric status (CUresult, nvrtcResult or cublasStatus_t); 0 when not from a status code. */
    public int code() {
        return code;
    }
}
