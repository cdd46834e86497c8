package dev.jsloth.opencl;

import org.jocl.CL;

/**
 * Loads JOCL's native library (which in turn loads the OpenCL ICD loader) once per JVM, and remembers what went
 * wrong: a class whose static initialiser failed cannot be retried, so the first answer is the answer.
 */
final class NativeLibrary {
    private static final String PROBLEM = load();

    private NativeLibrary() {
    }

    /** Null when JOCL and the ICD loader are usable, else the reason in words. */
    static String problem() {
        return PROBLEM;
    }

    private static String load() {
        try {
            CL.setExceptionsEnabled(true);
            return null;
        } catch (UnsatisfiedLinkError e) {
            String msg = String.valueOf(e.getMessage());
            if (msg.contains("Implementation library could not be loaded"))
                return "no OpenCL ICD loader (libOpenCL.so.1) could be loaded; install ocl-icd-libopencl1 and a driver "
                        + "(a GPU vendor's, or pocl-opencl-icd for CPUs)";
            return "the JOCL native library could not be loaded: " + msg;
        } catch (LinkageError | RuntimeException e) {
            return "the JOCL native library could not be loaded: " + e;
        }
    }
}
