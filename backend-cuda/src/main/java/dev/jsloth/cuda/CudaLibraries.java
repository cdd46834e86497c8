package dev.jsloth.cuda;

import dev.jsloth.api.spi.Availability;

import java.util.List;
import java.util.Optional;

/**
 * The three native libraries the backend needs (driver API, NVRTC, cuBLASLt), loaded and probed once per JVM.
 * The probe never throws: whatever is missing or failing becomes the reason of an unavailable {@link Availability}.
 */
final class CudaLibraries {
    static final String DEVICE_PROPERTY = "jsloth.cuda.device";
    static final String DEVICE_ENV = "JSLOTH_CUDA_DEVICE";

    /**
     * What the probe found: the loaded libraries (null when unavailable), the availability, and how many devices the
     * driver reports (0 where it did not get that far).
     */
    record Probe(CudaLibraries libraries, Availability availability, int deviceCount) {
    }

    private static Probe probe;

    final CudaDriver driver;
    final Nvrtc nvrtc;
    final CublasLt cublas;
    final int deviceOrdinal;

    private CudaLibraries(CudaDriver driver, Nvrtc nvrtc, CublasLt cublas, int deviceOrdinal) {
        this.driver = driver;
        this.nvrtc = nvrtc;
        this.cublas = cublas;
        this.deviceOrdinal = deviceOrdinal;
    }

    /** The cached probe result. */
    static synchronized Probe probe() {
        if (probe == null) {
            try {
                probe = runProbe();
            } catch (RuntimeException | LinkageError e) {
                probe = new Probe(null, Availability.unavailable("CUDA probe failed: " + e), 0);
            }
        }
        return probe;
    }

    private static Probe runProbe() {
        Optional<NativeLibraries.Loaded> cuda = NativeLibraries.load(List.of(CudaDriver.LIBRARY, "libcuda.so"));
        if (cuda.isEmpty()) return unavailable(CudaDriver.LIBRARY + " not found (no NVIDIA driver)");
        CudaDriver driver;
        try {
            driver = new CudaDriver(cuda.get());
        } catch (CudaException e) {
            return unavailable(e.getMessage());
        }
        int init = driver.init();
        if (init != 0) return unavailable("cuInit failed: " + driver.describe(init));
        int count = driver.deviceCount();
        if (count == 0) return unavailable("no CUDA device found (cuDeviceGetCount returned 0)");
        int ordinal = deviceOrdinal();
        if (ordinal < 0 || ordinal >= count)
            return new Probe(null, Availability.unavailable("CUDA device " + ordinal + " requested (" + deviceSetting() + ") but only "
                    + count + " present" + visibleDevicesNote()), count);

        Optional<NativeLibraries.Loaded> nvrtcLib = NativeLibraries.load(Nvrtc.LIBRARIES);
        if (nvrtcLib.isEmpty()) return unavailable("NVRTC not found: " + NativeLibraries.describeSearch(Nvrtc.LIBRARIES));
        Optional<NativeLibraries.Loaded> cublasLib = NativeLibraries.load(CublasLt.LIBRARIES);
        if (cublasLib.isEmpty())
            return unavailable("cuBLASLt not found: " + NativeLibraries.describeSearch(CublasLt.LIBRARIES));
        Nvrtc nvrtc;
        CublasLt cublas;
        try {
            nvrtc = new Nvrtc(nvrtcLib.get());
            cublas = new CublasLt(cublasLib.get());
        } catch (CudaException e) {
            return unavailable(e.getMessage());
        }

        int device = driver.device(ordinal);
        int major = driver.attribute(CudaDriver.ATTR_COMPUTE_CAPABILITY_MAJOR, device);
        int minor = driver.attribute(CudaDriver.ATTR_COMPUTE_CAPABILITY_MINOR, device);
        int version = driver.driverVersion();
        String detail = String.format(java.util.Locale.ROOT, "%s (sm_%d%d, %d SMs, %.0f GiB), driver CUDA %d.%d, NVRTC %s, cuBLASLt %d",
                driver.deviceName(device), major, minor, driver.attribute(CudaDriver.ATTR_MULTIPROCESSOR_COUNT, device),
                driver.totalMemory(device) / (double) (1L << 30), version / 1000, (version % 1000) / 10, nvrtc.version(),
                cublas.version());
        return new Probe(new CudaLibraries(driver, nvrtc, cublas, ordinal), Availability.available(detail), count);
    }

    private static Probe unavailable(String why) {
        return new Probe(null, Availability.unavailable(why), 0);
    }

    /** Where the device ordinal came from, for messages. */
    private static String deviceSetting() {
        String local = System.getenv("WORLD_SIZE") != null ? System.getenv("LOCAL_RANK") : null;
        if (local != null && !local.isBlank()) return "LOCAL_RANK=" + local.trim() + " of a process group";
        return DEVICE_PROPERTY + " / " + DEVICE_ENV;
    }

    /** ", CUDA_VISIBLE_DEVICES=..." when that variable narrows what the driver shows. */
    static String visibleDevicesNote() {
        String v = System.getenv("CUDA_VISIBLE_DEVICES");
        return v == null ? "" : " (CUDA_VISIBLE_DEVICES=" + v + ")";
    }

    /**
     * The device to use: {@code LOCAL_RANK} in a data-parallel process group (one GPU per process), else system property
     * {@value #DEVICE_PROPERTY}, else {@value #DEVICE_ENV}, else 0.
     */
    static int deviceOrdinal() {
        // in a process group, LOCAL_RANK first: a device setting the launcher copied into every rank would put them all
        // on one GPU (NCCL: "Duplicate GPU")
        String s = System.getenv("WORLD_SIZE") != null ? System.getenv("LOCAL_RANK") : null;
        if (s == null || s.isBlank()) s = System.getProperty(DEVICE_PROPERTY);
        if (s == null || s.isBlank()) s = System.getenv(DEVICE_ENV);
        if (s == null || s.isBlank()) return 0;
        try {
            return Integer.parseInt(s.trim());
        } catch (NumberFormatException e) {
            return -1;
        }
    }
}
