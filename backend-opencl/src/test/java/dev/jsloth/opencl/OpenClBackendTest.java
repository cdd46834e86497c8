package dev.jsloth.opencl;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.MemoryStats;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;
import dev.jsloth.api.spi.Availability;
import dev.jsloth.api.spi.BackendUnavailableException;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

import java.util.Locale;
import java.util.function.Supplier;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The OpenCL provider and backend: availability reasons, device selection, kernel builds and memory accounting.
 * Tests that need a device are skipped, with the provider's reason, where OpenCL is unavailable.
 */
class OpenClBackendTest {
    private final OpenClBackendProvider provider = new OpenClBackendProvider();

    private OpenClDevice requireDevice() {
        Availability a = provider.availability();
        Assumptions.assumeTrue(a.available(), () -> "OpenCL unavailable: " + a.reason());
        return ((DeviceSelector.Found) DeviceSelector.select()).device();
    }

    private static <T> T withProperty(String key, String value, Supplier<T> body) {
        String old = System.getProperty(key);
        try {
            System.setProperty(key, value);
            return body.get();
        } finally {
            if (old == null) System.clearProperty(key);
            else System.setProperty(key, old);
        }
    }

    @Test
    void providerIdentity() {
        assertEquals("opencl", provider.name());
        assertEquals(5, provider.priority());
    }

    @Test
    void anFp64SettingOtherThanTrueOrFalseIsRefusedByName() {
        requireDevice();
        Availability a = withProperty(DeviceSelector.FP64_PROPERTY, "1", provider::availability);
        assertFalse(a.available());
        assertTrue(a.reason().contains(DeviceSelector.FP64_PROPERTY + " takes true or false, got '1'"), a.reason());
        assertTrue(withProperty(DeviceSelector.FP64_PROPERTY, " FALSE ", provider::availability).available());
    }

    @Test
    void aBogusPlatformFilterMakesTheProviderUnavailableWithAReason() {
        Availability a = withProperty(DeviceSelector.PLATFORM_PROPERTY, "no-such-platform-4711", provider::availability);
        assertFalse(a.available());
        assertNotNull(a.reason());
        assertFalse(a.reason().isBlank());
        if (NativeLibrary.problem() == null) // with OpenCL present, the reason names the filter that matched nothing
            assertTrue(a.reason().contains("no-such-platform-4711"), a.reason());
        var e = assertThrows(BackendUnavailableException.class,
                () -> withProperty(DeviceSelector.PLATFORM_PROPERTY, "no-such-platform-4711", provider::create));
        assertTrue(e.getMessage().contains(a.reason()), e.getMessage());
    }

    @Test
    void aBogusDeviceFilterIsReportedWithTheDevicesSeen() {
        requireDevice();
        Availability a = withProperty(DeviceSelector.DEVICE_PROPERTY, "no-such-device-4711", provider::availability);
        assertFalse(a.available());
        assertTrue(a.reason().contains("no-such-device-4711") && a.reason().contains("does not match"), a.reason());
    }

    @Test
    void devicesAreSelectedByCaseInsensitiveNameSubstrings() {
        OpenClDevice d = requireDevice();
        String name = d.name();
        String part = name.substring(name.length() / 3, Math.max(name.length() / 3 + 1, 2 * name.length() / 3));
        String platformPart = d.platformName().substring(0, Math.min(6, d.platformName().length()));
        var r = DeviceSelector.select(new DeviceSelector.Filters(platformPart.toUpperCase(Locale.ROOT), part.toLowerCase(Locale.ROOT)));
        OpenClDevice chosen = assertInstanceOf(DeviceSelector.Found.class, r).device();
        assertEquals(name, chosen.name());
        assertEquals(d.platformName(), chosen.platformName());
    }

    @Test
    void versionParsing() {
        assertTrue(DeviceSelector.atLeast12("OpenCL 1.2 CUDA"));
        assertTrue(DeviceSelector.atLeast12("OpenCL 3.0 PoCL HSTR: pthread"));
        assertFalse(DeviceSelector.atLeast12("OpenCL 1.1 Mesa"));
        assertFalse(DeviceSelector.atLeast12("garbage"));
    }

    @Test
    void everyProgramBuildsForEveryPrecisionAndBucket() {
        OpenClDevice d = requireDevice();
        try (OpenClBackend be = (OpenClBackend) provider.create()) {
            assertTrue(be.description().contains(d.name()) && be.description().contains(d.platformName()), be.description());
            for (Precision p : Precision.values()) {
                if (p == Precision.DOUBLE && !d.fp64()) continue;
                assertNotNull(be.library().gemmKernel(p, DType.F32, DType.NF4, p == Precision.DOUBLE ? DType.F64 : DType.BF16));
                for (String k : new String[]{"ew_copy", "rmsnorm_forward", "cross_entropy_forward", "sum_squares_partial"})
                    assertNotNull(be.library().kernel(p, k));
                for (int bucket : KernelLibrary.ATTENTION_BUCKETS)
                    assertNotNull(be.library().attentionKernel(p, bucket, "attention_forward"));
            }
        }
    }

    @Test
    void roundTripsAndASmallGemm() {
        requireDevice();
        try (Backend be = provider.create();
             Tensor a = be.upload(DType.F32, Shape.of(2, 3), new double[]{1, 2, 3, 4, 5, 6});
             Tensor b = be.upload(DType.BF16, Shape.of(3, 2), new double[]{1, 0, 0, 1, 1, 1});
             Tensor c = be.allocate(DType.F32, 2, 2)) {
            be.kernels().gemm(false, false, 1, a, b, 0, c);
            assertArrayEquals(new double[]{4, 5, 10, 11}, be.download(c), 0);
            try (Tensor ids = be.uploadInts(Shape.of(3), new int[]{7, -1, 42})) {
                assertArrayEquals(new int[]{7, -1, 42}, be.downloadInts(ids));
            }
            assertArrayEquals(new double[]{4, 5}, be.download(c.rows(0, 1)), 0);
            assertArrayEquals(new double[]{10, 11}, be.download(c.rows(1, 1)), 0);
        }
    }

    @Test
    void memoryAccountingReturnsToZeroAfterClose() {
        requireDevice();
        Backend be = provider.create();
        MemoryStats empty = be.memoryStats();
        assertEquals(0, empty.liveBytes());
        assertEquals(0, empty.liveTensors());
        Tensor a = be.allocate(DType.F32, 100, 10);
        Tensor b = be.upload(DType.BF16, Shape.of(7), new double[7]);
        Tensor view = a.rows(10, 5);
        MemoryStats s = be.memoryStats();
        assertEquals(2, s.liveTensors());
        assertTrue(s.liveBytes() >= 4000 + 14, s.toString());
        assertTrue(s.peakBytes() >= s.liveBytes());
        a.close();
        assertTrue(view.isClosed());
        assertThrows(IllegalStateException.class, () -> be.download(view));
        be.resetPeak();
        assertEquals(be.memoryStats().liveBytes(), be.memoryStats().peakBytes());
        be.close();
        assertTrue(b.isClosed());
        assertEquals(new MemoryStats(0, be.memoryStats().peakBytes(), 0), be.memoryStats());
        assertEquals(0, be.memoryStats().liveBytes());
    }

    /**
     * A tensor past the device's largest allocation is a {@link dev.jsloth.api.DeviceOutOfMemoryException} naming the
     * limit (it was a java.lang.OutOfMemoryError, which the cleanup paths that catch RuntimeException did not see),
     * and nothing is left registered.
     */
    @Test
    void aTensorPastTheLargestAllocationIsADeviceOutOfMemoryError() {
        requireDevice();
        try (OpenClBackend be = (OpenClBackend) provider.create()) {
            long max = be.device().maxAllocBytes();
            int cols = 1 << 20;
            int rows = Math.toIntExact(Math.min(Integer.MAX_VALUE, max / (4L * cols) + 1));
            Assumptions.assumeTrue((long) rows * cols * 4 > max, "the device's largest allocation does not fit an int-sized shape");
            var e = assertThrows(dev.jsloth.api.DeviceOutOfMemoryException.class, () -> be.allocate(DType.F32, rows, cols));
            assertTrue(e.getMessage().contains("at most " + max + " bytes"), e.getMessage());
            assertEquals(0, be.memoryStats().liveTensors());
        }
    }

    /** bench trains in BF16 only where the tensor-core kernels run (NVIDIA GPUs of compute capability 8.0+). */
    @Test
    void prefersBf16TrainingOnlyWithTensorCores() {
        requireDevice();
        try (Backend be = provider.create()) {
            boolean tensorCores = ((OpenClBackend) be).config().tensorCores();
            assertEquals(tensorCores ? DType.BF16 : DType.F32, be.preferredTrainingType(), be.description());
        }
    }

    @Test
    void sizeClassesArePowersOfTwoThenTwoMebibyteMultiples() {
        assertEquals(512, BufferPool.sizeClass(1));
        assertEquals(512, BufferPool.sizeClass(512));
        assertEquals(1024, BufferPool.sizeClass(513));
        assertEquals(1 << 20, BufferPool.sizeClass((1 << 20) - 1));
        assertEquals(2L << 20, BufferPool.sizeClass((1 << 20) + 1));
        assertEquals(4L << 20, BufferPool.sizeClass((2L << 20) + 1));
    }

    /** A released buffer is handed to the next tensor of its size class; its contents are the new tensor's to set. */
    @Test
    void releasedBuffersAreReusedWithinTheirSizeClass() {
        requireDevice();
        try (Backend be = provider.create()) {
            Tensor a = be.upload(DType.F32, Shape.of(100), new double[100]);
            org.jocl.cl_mem first = ((OpenClTensor) a).rawBuffer();
            a.close();
            try (Tensor b = be.allocate(DType.F32, 120); Tensor c = be.allocate(DType.F32, 1000)) {
                assertSame(first, ((OpenClTensor) b).rawBuffer(), "a 480-byte tensor takes the cached 512-byte buffer");
                assertNotSame(first, ((OpenClTensor) c).rawBuffer(), "a 4000-byte tensor needs a buffer of its own class");
                assertArrayEquals(new double[120], be.download(b), 0.0, "allocate() zeroes a reused buffer");
                assertEquals(512 + 4096, be.memoryStats().liveBytes(), "live bytes count the size classes");
            }
        }
    }

    @Test
    void thousandCreateCloseCyclesLeakNothing() {
        requireDevice();
        try (Backend be = provider.create()) {
            for (int i = 0; i < 1000; i++) {
                try (Tensor x = be.upload(DType.F32, Shape.of(4, 33), new double[132]);
                     Tensor y = be.allocate(i % 2 == 0 ? DType.BF16 : DType.F16, 4, 33);
                     Tensor bias = be.allocate(DType.F32, 33)) {
                    be.kernels().fill(x, i);
                    be.kernels().copy(x, y);
                    be.kernels().sumRows(x, bias, false); // uses and frees a scratch buffer
                    if (i % 100 == 0) assertEquals(132.0 * i * i, be.kernels().sumOfSquares(x), 1e-6 * i * i);
                }
            }
            be.synchronize();
            MemoryStats s = be.memoryStats();
            assertEquals(0, s.liveBytes(), s.toString());
            assertEquals(0, s.liveTensors(), s.toString());
            assertTrue(s.peakBytes() > 0);
        }
    }

    /** A device without fp64 (simulated: this device with the capability masked) stores F64 but will not compute in it. */
    @Test
    void withoutFp64F64ComputeFailsClearlyAndTheRestWorks() {
        OpenClDevice d = requireDevice();
        OpenClDevice noFp64 = new OpenClDevice(d.platform(), d.device(), d.platformName(), d.name(), d.type(), d.version(), false,
                d.computeUnits(), d.maxWorkGroupSize(), d.localMemBytes(), d.globalMemBytes(), d.maxAllocBytes(), d.nvidiaCapability());
        try (OpenClBackend be = new OpenClBackend(noFp64);
             Tensor x64 = be.upload(DType.F64, Shape.of(2, 2), new double[]{1, 2, 3, Math.PI});
             Tensor y64 = be.allocate(DType.F64, 2, 2);
             Tensor x32 = be.upload(DType.F32, Shape.of(2, 2), new double[]{1, 2, 3, 4});
             Tensor y32 = be.allocate(DType.F32, 2, 2)) {
            assertTrue(be.description().contains("no fp64"), be.description());
            assertArrayEquals(new double[]{1, 2, 3, Math.PI}, be.download(x64), 0.0); // F64 storage still round-trips
            be.kernels().copy(x64, y64);                                               // and copies byte for byte
            assertArrayEquals(be.download(x64), be.download(y64), 0.0);
            for (Runnable op : new Runnable[]{() -> be.kernels().add(x64, x64, y64), () -> be.kernels().gemm(false, false, 1, x32, x32, 0, y64),
                    () -> be.kernels().copy(x64, y32), () -> be.kernels().sumOfSquares(x64)}) {
                var e = assertThrows(UnsupportedOperationException.class, op::run);
                assertTrue(e.getMessage().contains("F64") && e.getMessage().contains(d.name()), e.getMessage());
            }
            be.kernels().gemm(false, false, 1, x32, x32, 0, y32);
            assertArrayEquals(new double[]{7, 10, 15, 22}, be.download(y32), 0.0);
            assertEquals(30.0, be.kernels().sumOfSquares(x32), 0.0); // accumulated in float pairs without fp64
        }
    }

    @Test
    void tensorsOfAnotherBackendAreRejected() {
        requireDevice();
        try (Backend one = provider.create(); Backend two = provider.create();
             Tensor x = one.allocate(DType.F32, 3); Tensor y = two.allocate(DType.F32, 3)) {
            assertThrows(IllegalArgumentException.class, () -> one.kernels().add(x, y, x));
        }
    }

    /**
     * sumOfSquares is exact to about double precision with or without fp64: in double where the device has it, in float
     * pairs where it has not (run with {@code -Djsloth.opencl.fp64=false} by the pom's {@code no-fp64} execution, on the
     * same device). A plain float sum of these 1,000,003 squares, whose magnitudes span 12 decades, is off by ~1e-7.
     */
    @Test
    void sumOfSquaresIsNearDoublePrecisionWithOrWithoutFp64() {
        requireDevice();
        java.util.SplittableRandom r = new java.util.SplittableRandom(3);
        int n = 1_000_003;
        double[] v = new double[n];
        for (int i = 0; i < n; i++) v[i] = (float) (r.nextGaussian() * Math.pow(10, r.nextDouble(-3, 3)));
        try (OpenClBackend be = (OpenClBackend) provider.create()) {
            assertEquals(!DeviceSelector.fp64Allowed(), !be.device().fp64(), "the fp64 property is honoured");
            for (DType dt : new DType[]{DType.F32, DType.BF16}) {
                try (Tensor x = be.upload(dt, Shape.of(n), v)) {
                    java.math.BigDecimal exact = java.math.BigDecimal.ZERO;
                    for (double e : be.download(x)) exact = exact.add(new java.math.BigDecimal(e * e)); // a float's square is exact in double
                    double got = be.kernels().sumOfSquares(x), want = exact.doubleValue();
                    assertEquals(want, got, 1e-12 * want, dt + (be.device().fp64() ? " in double" : " in float pairs"));
                }
            }
            // squares past float's range: inf in float pairs (the error term of an infinite sum is inf - inf, which gave
            // NaN, read as NaN gradients), the exact sum in double; a NaN stays NaN
            try (Tensor big = be.upload(DType.F32, Shape.of(3), new double[]{1.5e19, 1.5e19, 1});
                 Tensor nan = be.upload(DType.F32, Shape.of(2), new double[]{1, Double.NaN})) {
                double got = be.kernels().sumOfSquares(big);
                double[] d = be.download(big);
                if (be.device().fp64()) assertEquals(d[0] * d[0] + d[1] * d[1] + d[2] * d[2], got, 1e-12 * got);
                else assertEquals(Double.POSITIVE_INFINITY, got);
                assertTrue(Double.isNaN(be.kernels().sumOfSquares(nan)));
            }
        }
    }
}
