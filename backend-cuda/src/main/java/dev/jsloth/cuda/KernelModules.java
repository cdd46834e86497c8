package dev.jsloth.cuda;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Kernels compiled and loaded on first use. A request for {@code kernel<T...>} compiles (or takes from the cache)
 * one program per source file and type list, holding every kernel of that file with as many type parameters, and
 * loads it as one module.
 */
final class KernelModules implements AutoCloseable {
    private final CudaDevice device;
    private final KernelCompiler compiler;
    private final Map<String, Kernel> kernels = new ConcurrentHashMap<>();
    private final List<MemorySegment> modules = new ArrayList<>();

    KernelModules(CudaDevice device, KernelCompiler compiler) {
        this.device = device;
        this.compiler = compiler;
    }

    /** A kernel request as a map key: building the name expression on every launch cost a microsecond. */
    private record Request(KernelId id, List<ElementType> types) {
    }

    private final Map<Request, Kernel> loaded = new ConcurrentHashMap<>();

    Kernel get(KernelId id, ElementType... types) {
        Request r = new Request(id, Arrays.asList(types));
        Kernel k = loaded.get(r);
        if (k != null) return k;
        List<ElementType> typeList = List.of(types);
        String expr = id.nameExpression(typeList);
        k = kernels.get(expr);
        if (k == null) k = load(id, typeList, expr);
        loaded.put(new Request(id, typeList), k);
        return k;
    }

    private synchronized Kernel load(KernelId id, List<ElementType> types, String expr) {
        Kernel k = kernels.get(expr);
        if (k != null) return k;
        List<KernelId> siblings = Arrays.stream(KernelId.values())
                .filter(s -> s.file.equals(id.file) && s.typeParameters == id.typeParameters).toList();
        List<String> expressions = siblings.stream().map(s -> s.nameExpression(types)).toList();
        Nvrtc.Program program = compiler.compile(id.file, expressions, device.architecture());
        device.bind();
        MemorySegment module;
        try (Arena arena = Arena.ofConfined()) {
            byte[] image = program.image();
            MemorySegment img = arena.allocate(image.length + 1L, 16); // NUL-terminated, as PTX images must be
            MemorySegment.copy(image, 0, img, ValueLayout.JAVA_BYTE, 0, image.length);
            module = device.driver.loadModule(img, id.file + " " + types);
        }
        modules.add(module);
        for (String e : expressions) {
            String lowered = program.loweredNames().get(e);
            if (lowered == null) throw new CudaException("NVRTC did not lower " + e + " in " + id.file);
            kernels.put(e, new Kernel(device, device.driver.function(module, lowered), e));
        }
        return kernels.get(expr);
    }

    @Override
    public synchronized void close() {
        device.bind();
        for (MemorySegment m : modules) device.driver.unloadModule(m);
        modules.clear();
        kernels.clear();
        loaded.clear();
    }
}
