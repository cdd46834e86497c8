package dev.jsloth.opencl;

import org.jocl.CL;
import org.jocl.CLException;
import org.jocl.cl_device_id;
import org.jocl.cl_platform_id;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;

/**
 * Finds the OpenCL device the backend runs on, or says in words why there is none. Checked in order: the JOCL
 * native library loads, an ICD loader ({@code libOpenCL.so.1}) is present, it lists platforms, and a platform
 * has a usable device. Among usable devices a GPU is preferred, then an accelerator, then a CPU (PoCL); the
 * choice can be narrowed by case-insensitive name substrings in the system properties
 * {@value #PLATFORM_PROPERTY} / {@value #DEVICE_PROPERTY} or the environment variables {@value #PLATFORM_ENV} /
 * {@value #DEVICE_ENV}. Never throws.
 */
final class DeviceSelector {
    static final String PLATFORM_PROPERTY = "jsloth.opencl.platform";
    /**
     * {@code -Djsloth.opencl.fp64=false}: the device is taken as having no doubles (F64 tensors refused, the sum of
     * squares in float pairs), so that those paths run on a device that has them (the tests' PoCL).
     */
    static final String FP64_PROPERTY = "jsloth.opencl.fp64";
    static final String DEVICE_PROPERTY = "jsloth.opencl.device";

    /** {@link #FP64_PROPERTY}: true (the default) or false; anything else is refused, naming the property. */
    static boolean fp64Allowed() {
        String v = System.getProperty(FP64_PROPERTY, "true").trim();
        if (v.equalsIgnoreCase("true")) return true;
        if (v.equalsIgnoreCase("false")) return false;
        throw new IllegalArgumentException("-D" + FP64_PROPERTY + " takes true or false, got '" + v + "'");
    }
    static final String PLATFORM_ENV = "JSLOTH_OPENCL_PLATFORM";
    static final String DEVICE_ENV = "JSLOTH_OPENCL_DEVICE";

    /** Name substrings that platform and device must contain (null: any). */
    record Filters(String platform, String device) {
        static Filters fromEnvironment() {
            return new Filters(setting(PLATFORM_PROPERTY, PLATFORM_ENV), setting(DEVICE_PROPERTY, DEVICE_ENV));
        }

        private static String setting(String property, String env) {
            String v = System.getProperty(property);
            if (v == null || v.isBlank()) v = System.getenv(env);
            return v == null || v.isBlank() ? null : v.trim();
        }

        boolean platformMatches(String name) {
            return platform == null || contains(name, platform);
        }

        boolean deviceMatches(String name) {
            return device == null || contains(name, device);
        }

        private static boolean contains(String name, String part) {
            return name.toLowerCase(Locale.ROOT).contains(part.toLowerCase(Locale.ROOT));
        }
    }

    /** The outcome of a selection: a device, or the reason there is none. */
    sealed interface Result permits Found, Missing {
    }

    record Found(OpenClDevice device) implements Result {
    }

    record Missing(String reason) implements Result {
    }

    private DeviceSelector() {
    }

    /** Selects with the filters of the system properties / environment. */
    static Result select() {
        return select(Filters.fromEnvironment());
    }

    static Result select(Filters filters) {
        String nativeProblem = NativeLibrary.problem();
        if (nativeProblem != null) return new Missing(nativeProblem);
        try {
            return selectFrom(platforms(), filters);
        } catch (CLException e) {
            return new Missing(explain(e));
        } catch (RuntimeException | LinkageError e) {
            return new Missing("OpenCL probe failed: " + e);
        }
    }

    private static List<cl_platform_id> platforms() {
        int[] count = new int[1];
        try {
            CL.clGetPlatformIDs(0, null, count);
        } catch (CLException e) {
            if (e.getStatus() == CL.CL_PLATFORM_NOT_FOUND_KHR) return List.of();
            throw e;
        }
        cl_platform_id[] ids = new cl_platform_id[count[0]];
        if (ids.length > 0) CL.clGetPlatformIDs(ids.length, ids, null);
        return List.of(ids);
    }

    private static Result selectFrom(List<cl_platform_id> platforms, Filters filters) {
        if (platforms.isEmpty())
            return new Missing("the OpenCL ICD loader found no platform (no driver registered in /etc/OpenCL/vendors; "
                    + "install one, e.g. pocl-opencl-icd for CPUs)");
        List<String> platformNames = new ArrayList<>();
        List<String> rejected = new ArrayList<>();
        List<OpenClDevice> candidates = new ArrayList<>();
        boolean anyPlatformMatched = false;
        for (cl_platform_id p : platforms) {
            String pname = ClInfo.platformString(p, CL.CL_PLATFORM_NAME);
            platformNames.add(pname);
            if (!filters.platformMatches(pname)) continue;
            anyPlatformMatched = true;
            List<cl_device_id> devices;
            try {
                devices = devices(p);
            } catch (CLException e) { // one broken driver must not hide the others
                rejected.add("platform " + pname + " (" + e.getMessage() + ")");
                continue;
            }
            for (cl_device_id d : devices) {
                String dname = ClInfo.deviceString(d, CL.CL_DEVICE_NAME);
                if (!filters.deviceMatches(dname)) {
                    rejected.add(dname + " (name does not match)");
                    continue;
                }
                String unusable = unusable(d);
                if (unusable != null) {
                    rejected.add(dname + " (" + unusable + ")");
                    continue;
                }
                candidates.add(describe(p, pname, d, dname));
            }
        }
        if (!anyPlatformMatched)
            return new Missing("no OpenCL platform matches " + PLATFORM_PROPERTY + "/" + PLATFORM_ENV + " '" + filters.platform()
                    + "' (platforms: " + String.join(", ", platformNames) + ")");
        if (candidates.isEmpty()) {
            String filter = filters.device() == null ? "" : " matching " + DEVICE_PROPERTY + "/" + DEVICE_ENV + " '" + filters.device() + "'";
            return new Missing("no usable OpenCL device" + filter + " (platforms: " + String.join(", ", platformNames)
                    + (rejected.isEmpty() ? "; no devices" : "; devices: " + String.join(", ", rejected)) + ")");
        }
        candidates.sort(Comparator.comparing(OpenClDevice::type)); // stable: keeps platform/device order within a type
        return new Found(candidates.getFirst());
    }

    private static List<cl_device_id> devices(cl_platform_id p) {
        int[] count = new int[1];
        try {
            CL.clGetDeviceIDs(p, CL.CL_DEVICE_TYPE_ALL, 0, null, count);
        } catch (CLException e) {
            if (e.getStatus() == CL.CL_DEVICE_NOT_FOUND) return List.of();
            throw e;
        }
        cl_device_id[] ids = new cl_device_id[count[0]];
        if (ids.length > 0) CL.clGetDeviceIDs(p, CL.CL_DEVICE_TYPE_ALL, ids.length, ids, null);
        return List.of(ids);
    }

    /** Why the backend cannot use a device, or null when it can. */
    private static String unusable(cl_device_id d) {
        if (ClInfo.deviceInt(d, CL.CL_DEVICE_AVAILABLE) == 0) return "not available";
        if (ClInfo.deviceInt(d, CL.CL_DEVICE_COMPILER_AVAILABLE) == 0) return "no OpenCL C compiler";
        if (ClInfo.deviceInt(d, CL.CL_DEVICE_ENDIAN_LITTLE) == 0) return "big-endian";
        String version = ClInfo.deviceString(d, CL.CL_DEVICE_VERSION);
        if (!atLeast12(version)) return "needs OpenCL 1.2, device has '" + version + "'";
        return null;
    }

    /** Parses "OpenCL major.minor ..." and compares with 1.2. */
    static boolean atLeast12(String version) {
        String[] parts = version.split(" ");
        if (parts.length < 2) return false;
        String[] mm = parts[1].split("\\.");
        try {
            int major = Integer.parseInt(mm[0]), minor = mm.length > 1 ? Integer.parseInt(mm[1].replaceAll("\\D.*", "")) : 0;
            return major > 1 || (major == 1 && minor >= 2);
        } catch (NumberFormatException e) {
            return false;
        }
    }

    /** cl_nv_device_attribute_query's compute capability queries. */
    private static final int CL_DEVICE_COMPUTE_CAPABILITY_MAJOR_NV = 0x4000, CL_DEVICE_COMPUTE_CAPABILITY_MINOR_NV = 0x4001;

    private static OpenClDevice describe(cl_platform_id p, String pname, cl_device_id d, String dname) {
        long typeBits = ClInfo.deviceLong(d, CL.CL_DEVICE_TYPE);
        OpenClDevice.Type type = (typeBits & CL.CL_DEVICE_TYPE_GPU) != 0 ? OpenClDevice.Type.GPU
                : (typeBits & CL.CL_DEVICE_TYPE_ACCELERATOR) != 0 ? OpenClDevice.Type.ACCELERATOR
                : (typeBits & CL.CL_DEVICE_TYPE_CPU) != 0 ? OpenClDevice.Type.CPU : OpenClDevice.Type.OTHER;
        String extensions = ClInfo.deviceString(d, CL.CL_DEVICE_EXTENSIONS);
        boolean fp64 = (ClInfo.deviceLong(d, CL.CL_DEVICE_DOUBLE_FP_CONFIG) != 0 || extensions.contains("cl_khr_fp64"))
                && fp64Allowed();
        int nvidia = extensions.contains("cl_nv_device_attribute_query")
                ? 10 * ClInfo.deviceInt(d, CL_DEVICE_COMPUTE_CAPABILITY_MAJOR_NV) + ClInfo.deviceInt(d, CL_DEVICE_COMPUTE_CAPABILITY_MINOR_NV) : 0;
        return new OpenClDevice(p, d, pname, dname, type, ClInfo.deviceString(d, CL.CL_DEVICE_VERSION), fp64,
                ClInfo.deviceInt(d, CL.CL_DEVICE_MAX_COMPUTE_UNITS), ClInfo.deviceSize(d, CL.CL_DEVICE_MAX_WORK_GROUP_SIZE),
                ClInfo.deviceLong(d, CL.CL_DEVICE_LOCAL_MEM_SIZE), ClInfo.deviceLong(d, CL.CL_DEVICE_GLOBAL_MEM_SIZE),
                ClInfo.deviceLong(d, CL.CL_DEVICE_MAX_MEM_ALLOC_SIZE), nvidia);
    }

    private static String explain(CLException e) {
        return "OpenCL error while listing platforms and devices: " + e.getMessage();
    }
}
