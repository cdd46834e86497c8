package dev.jsloth.model;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;
import dev.jsloth.io.CheckpointFormatException;
import dev.jsloth.io.SafeTensorsCheckpoint;
import dev.jsloth.io.SafeTensorsFile;
import dev.jsloth.io.TensorEntry;

import java.lang.foreign.MemorySegment;

/** Moves safetensors tensors onto a backend, checking dtype and shape. */
final class Weights {
    private Weights() {
    }

    /** Uploads tensor {@code name} from one file, converted to {@code want} (null = keep the stored type). */
    static Tensor upload(Backend be, SafeTensorsFile f, String name, DType want) throws CheckpointFormatException {
        return upload(be, f.entry(name), f.bytes(name), f.path(), want);
    }

    static Tensor upload(Backend be, SafeTensorsCheckpoint ck, String name, int[] expectedShape, DType want)
            throws CheckpointFormatException {
        TensorEntry e = ck.entry(name);
        SafeTensorsFile f = ck.file(name);
        if (!e.hasShape(expectedShape))
            throw new CheckpointFormatException(f.path(), "tensor '" + name + "'", "shape " + java.util.Arrays.toString(e.shape())
                    + " does not match the config's " + java.util.Arrays.toString(expectedShape));
        return upload(be, e, ck.bytes(name), f.path(), want);
    }

    private static Tensor upload(Backend be, TensorEntry e, MemorySegment bytes, java.nio.file.Path file, DType want)
            throws CheckpointFormatException {
        DType stored = e.engineType();
        if (stored == null || !stored.isFloating())
            throw new CheckpointFormatException(file, "tensor '" + e.name() + "'", "dtype " + e.dtype() + " is not a floating type the engine reads");
        for (long dim : e.shape())
            if (dim > Integer.MAX_VALUE)
                throw new CheckpointFormatException(file, "tensor '" + e.name() + "'", "shape " + java.util.Arrays.toString(e.shape()) + " has a dimension past 2^31 - 1");
        Shape shape = Shape.of(e.intShape());
        Tensor raw = be.uploadRaw(stored, shape, bytes);
        if (want == null || want == stored) return raw;
        try (raw) {
            Tensor t = be.allocate(want, shape);
            try {
                be.kernels().copy(raw, t);
            } catch (RuntimeException | Error x) {
                t.close();
                throw x;
            }
            return t;
        }
    }
}
