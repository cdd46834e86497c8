package dev.jsloth.opencl;

import org.jocl.cl_device_id;
import org.jocl.cl_platform_id;

/**
 * One OpenCL device and what the backend needs to know about it: identity, type, capabilities and limits.
 *
 * @param platform           the platform the device belongs to
 * @param device             the device
 * @param platformName       {@code CL_PLATFORM_NAME}
 * @param name               {@code CL_DEVICE_NAME}
 * @param type               GPU, CPU, ACCELERATOR or OTHER
 * @param version            {@code CL_DEVICE_VERSION}
 * @param fp64               whether the device supports double precision ({@code cl_khr_fp64} or OpenCL 3.0's
 *                           fp64 feature)
 * @param computeUnits       {@code CL_DEVICE_MAX_COMPUTE_UNITS}
 * @param maxWorkGroupSize   {@code CL_DEVICE_MAX_WORK_GROUP_SIZE}
 * @param localMemBytes      {@code CL_DEVICE_LOCAL_MEM_SIZE}
 * @param globalMemBytes     {@code CL_DEVICE_GLOBAL_MEM_SIZE}
 * @param maxAllocBytes      {@code CL_DEVICE_MAX_MEM_ALLOC_SIZE}
 * @param nvidiaCapability   an NVIDIA GPU's compute capability as 10 major + minor (90 for 9.0), from
 *                           {@code cl_nv_device_attribute_query}; 0 for other devices
 */
record OpenClDevice(cl_platform_id platform, cl_device_id device, String platformName, String name, Type type,
                    String version, boolean fp64, int computeUnits, long maxWorkGroupSize, long localMemBytes,
                    long globalMemBytes, long maxAllocBytes, int nvidiaCapability) {

    /** The device classes selection prefers, best first. */
    enum Type {
        GPU, ACCELERATOR, CPU, OTHER
    }

    /** "platform / device (type, N compute units, fp64 or not)": what the backend's description shows. */
    String describe() {
        return platformName + " / " + name + " (" + type + ", " + computeUnits + " compute units, "
                + (globalMemBytes >> 20) + " MiB, " + (fp64 ? "fp64" : "no fp64") + ")";
    }
}
