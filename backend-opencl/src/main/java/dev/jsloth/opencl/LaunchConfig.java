package dev.jsloth.opencl;

/**
 * Work-group shapes chosen once per device, passed to the compiler as {@code -D} options where the sources need
 * them at compile time. Every size is a function of the device alone, so reductions (whose summation order
 * follows the work-group shape) give identical results run to run on one device.
 *
 * @param reductionGroup work-items per row in the row reductions (a power of two, at most 256)
 * @param gemmTile       the GEMM's square C tile per work-group
 * @param gemmWork       the square register block each GEMM work-item computes
 * @param gemmDepth      the k-depth of the GEMM's local-memory tiles
 * @param simpleGroup    work-group size of one-work-item-per-element kernels
 * @param localMemBytes  the device's local memory, for sizing the attention tiles
 * @param fullUnroll     whether attention unrolls its head-dimension loops completely (GPUs: keeps rows in
 *                       registers; CPU OpenCL compilers are slow on it and gain nothing)
 * @param cpuGemm        whether products into F32 use the register-blocked kernels of gemm_cpu.cl (CPU devices;
 *                       {@code -Djsloth.opencl.cpuGemm=false} keeps the tiled GPU kernel there too)
 * @param tensorCores    whether BF16 x BF16 products run on gemm_mma.cl and 16-bit attention at head dimensions 64 and
 *                       128 on flash_attention.cl (NVIDIA GPUs of compute capability 8.0+, inline PTX mma.sync;
 *                       {@code -Djsloth.opencl.tensorCores=false} keeps the tiled kernels)
 * @param wgmma          whether those products run on gemm_wgmma.cl instead of gemm_mma (compute capability 9.0: the
 *                       program is rebuilt from its PTX for sm_90a, see KernelLibrary; {@code -Djsloth.opencl.wgmma=false}
 *                       keeps gemm_mma)
 */
record LaunchConfig(int reductionGroup, int gemmTile, int gemmWork, int gemmDepth, int simpleGroup, long localMemBytes,
                    boolean fullUnroll, boolean cpuGemm, boolean tensorCores, boolean wgmma) {
    /** Rows per column-sum chunk ({@code COLSUM_ROWS} in reduce.cl). */
    static final int COLSUM_ROWS = 64;
    /** Largest key/query tile of the attention kernels ({@code ATT_TILE_MAX}). */
    static final int ATTENTION_TILE_MAX = 32;
    /** Work-items (query or key rows) per attention work-group, at most. */
    static final int ATTENTION_ROWS = 32;

    /** gemm_cpu.cl's blocks of C per work-item: gemm_nn rows (x 16 columns, two float8), gemm_nt rows x columns. */
    static final int CPU_NN_ROWS = 6, CPU_NN_COLS = 16, CPU_NT_ROWS = 3, CPU_NT_COLS = 4;
    /** An F32 B^T is copied for gemm_nn from this many rows of C (the copy is then at most 1/16 of the work). */
    static final int CPU_TRANSPOSE_MIN_M = 16;
    /** The largest operand copy (floats, 256 MB) gemm_cpu.cl's path makes; larger products take the tiled kernel. */
    static final long CPU_COPY_MAX_FLOATS = 64L << 20;
    /** System property turning gemm_cpu.cl off on CPU devices ({@code false}: the tiled kernel, for comparison). */
    static final String CPU_GEMM_PROPERTY = "jsloth.opencl.cpuGemm";
    /** System property turning gemm_mma.cl and flash_attention.cl off on NVIDIA GPUs ({@code false}: the tiled kernels). */
    static final String TENSOR_CORES_PROPERTY = "jsloth.opencl.tensorCores";
    /** System property turning gemm_wgmma.cl off on compute capability 9.0 ({@code false}: gemm_mma there too). */
    static final String WGMMA_PROPERTY = "jsloth.opencl.wgmma";
    /**
     * {@code -Djsloth.opencl.wgmmaOverlap=true}: gemm_wgmma.cl keeps one slice's wgmma in flight while the next is
     * issued (two barriers per slice; WG_OVERLAP); by default each slice's products complete before the next slice's
     * copies are queued (one barrier). Measured on an H200 (bf16 TFLOP/s, serial vs overlapped): 4096^3 X W^T 406 vs
     * 379, 8192x2048x5632 359 vs 355, 8192x5632x2048 X W^T 356 vs 339, 8192x2048x2048 344 vs 362.
     */
    static final boolean WGMMA_OVERLAP = Boolean.parseBoolean(System.getProperty("jsloth.opencl.wgmmaOverlap", "false"));
    /**
     * Products with N or M at most NARROW_MAX run on gemm_wgmma_narrow where gemm_wgmma runs (rows of C per work-group:
     * NARROW_ROWS); {@code -Djsloth.opencl.narrowGemm=false} keeps them on gemm_wgmma's 128 x 128 tiles.
     */
    static final boolean NARROW_GEMM = Boolean.parseBoolean(System.getProperty("jsloth.opencl.narrowGemm", "true"));
    static final int NARROW_MAX = 16, NARROW_ROWS = 64;
    /** Work-items of a gemm_wgmma_narrow work-group: one warpgroup. */
    static final int NARROW_THREADS = 128;
    /** Work-items of a gemm_wgmma work-group: two warpgroups. */
    static final int WGMMA_THREADS = 256;
    /** gemm_mma.cl's tile of C per work-group (square) and work-items per work-group: its MMA_BM = MMA_BN and warp layout. */
    static final int MMA_TILE = 128;
    /**
     * Columns of C per warp in gemm_mma.cl (MMA_WN): 32 (8 warps of 64 x 32) by default, 64 (4 warps of 64 x 64) with
     * {@code -Djsloth.opencl.mmaWarpCols=64}; {@code -Djsloth.opencl.mmaBuildOptions=...} adds compiler options (e.g.
     * {@code -cl-nv-verbose} with {@code -Djsloth.opencl.buildLog=true}). Measured on an H200 (NVIDIA OpenCL, driver
     * 580): 64 x 64 warps take 234-240 registers (2 work-groups, 8 warps per SM), 4096^3 X W^T 251 TFLOP/s; 64 x 32 warps
     * 122-124 registers (2 work-groups, 16 warps per SM), 318 TFLOP/s; tinyllama step 23,601 -> 28,323 tok/s.
     */
    static final int MMA_WARP_COLS = warpCols(Integer.getInteger("jsloth.opencl.mmaWarpCols", 32));
    static final String MMA_BUILD_OPTIONS = System.getProperty("jsloth.opencl.mmaBuildOptions", "");
    static final int MMA_THREADS = 128 * 64 / MMA_WARP_COLS;
    /** {@code -Djsloth.opencl.flashBackward128=false} keeps the backward pass at head dimension 128 on attention.cl. */
    static final boolean FLASH_BACKWARD_128 = Boolean.parseBoolean(System.getProperty("jsloth.opencl.flashBackward128", "true"));
    /** Local memory per pipeline stage of gemm_mma.cl: a 128 x 32 tile of each operand, 16-bit. */
    static final int MMA_STAGE_BYTES = 2 * MMA_TILE * 32 * 2;
    /**
     * The largest rank gemmPlusLowRank fuses on the tensor cores: the pair's 32-column slices must all be queued in the
     * pipeline's prologue (MMA_STAGES - 1 = 2 slices), so that the main loop only fetches the main pair.
     */
    static final int MMA_LOW_RANK_MAX = 64;
    /** The shortest K range of a split-K product on gemm_mma.cl. */
    static final int MMA_SPLIT_MIN_K = 256;

    /** System property overriding the GEMM shape, {@code TILE,WORK,DEPTH} (e.g. {@code 64,4,16}), for tuning. */
    static final String GEMM_PROPERTY = "jsloth.opencl.gemm";

    private static int warpCols(int v) {
        if (v != 32 && v != 64) throw new IllegalArgumentException("jsloth.opencl.mmaWarpCols must be 32 or 64, got " + v);
        return v;
    }

    static LaunchConfig forDevice(OpenClDevice d) {
        int maxGroup = (int) Math.min(Integer.MAX_VALUE, d.maxWorkGroupSize());
        int reduction = Integer.highestOneBit(Math.min(256, Math.max(1, maxGroup)));
        // 64x64 tiles with 4x4 register blocks need 256 work-items; smaller devices get 32x32 tiles (64 work-items)
        int tile = maxGroup >= 256 ? 64 : 32, work = 4, depth = 16;
        String override = System.getProperty(GEMM_PROPERTY);
        if (override != null && !override.isBlank()) {
            String[] p = override.trim().split(",");
            if (p.length != 3) throw new IllegalArgumentException(GEMM_PROPERTY + " takes TILE,WORK,DEPTH, got '" + override + "'");
            tile = Integer.parseInt(p[0].trim());
            work = Integer.parseInt(p[1].trim());
            depth = Integer.parseInt(p[2].trim());
            int side = tile / work;
            if (tile % work != 0 || (tile * depth) % (side * side) != 0 || side * side > maxGroup)
                throw new IllegalArgumentException(GEMM_PROPERTY + " '" + override + "': TILE must be a multiple of WORK, "
                        + "TILE*DEPTH a multiple of (TILE/WORK)^2, and (TILE/WORK)^2 <= " + maxGroup);
        }
        boolean cpu = d.type() == OpenClDevice.Type.CPU;
        boolean tensorCores = d.type() == OpenClDevice.Type.GPU && d.nvidiaCapability() >= 80
                && maxGroup >= Math.max(MMA_THREADS, WGMMA_THREADS) && d.localMemBytes() >= 3L * MMA_STAGE_BYTES
                && Boolean.parseBoolean(System.getProperty(TENSOR_CORES_PROPERTY, "true"));
        return new LaunchConfig(reduction, tile, work, depth, Math.min(64, reduction), d.localMemBytes(), !cpu,
                cpu && Boolean.parseBoolean(System.getProperty(CPU_GEMM_PROPERTY, "true")), tensorCores,
                tensorCores && d.nvidiaCapability() == 90 && Boolean.parseBoolean(System.getProperty(WGMMA_PROPERTY, "true")));
    }

    /** Work-items per side of a GEMM work-group. */
    int gemmSide() {
        return gemmTile / gemmWork;
    }

    /** Build options of gemm_cpu.cl: its block sizes, which the launch geometry in OpenClKernels follows. */
    static String cpuGemmOptions() {
        return " -DGEMM_RM=" + CPU_NN_ROWS + " -DNT_RM=" + CPU_NT_ROWS + " -DNT_CN=" + CPU_NT_COLS;
    }

    String buildOptions() {
        return "-DRED_WG=" + reductionGroup + " -DCOLSUM_ROWS=" + COLSUM_ROWS + " -DGEMM_TS=" + gemmTile
                + " -DGEMM_WPT=" + gemmWork + " -DGEMM_TK=" + gemmDepth + (fullUnroll ? " -DATT_FULL_UNROLL" : "");
    }
}
