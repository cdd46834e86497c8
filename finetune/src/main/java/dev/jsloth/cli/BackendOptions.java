package dev.jsloth.cli;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.spi.Backends;
import picocli.CommandLine.Option;

/** {@code --backend} and {@code --precision}, shared by the commands that compute. */
final class BackendOptions {
    /** The compute types the command line offers. */
    enum Precision {
        f32(DType.F32), f64(DType.F64), bf16(DType.BF16);

        final DType dtype;

        Precision(DType dtype) {
            this.dtype = dtype;
        }
    }

    @Option(names = "--backend", paramLabel = "NAME", description = "Backend to run on (default: ${jsloth.backend} or JSLOTH_BACKEND, else the best available). See 'jsloth backends'.")
    String backend;

    @Option(names = "--precision", paramLabel = "f32|f64|bf16", defaultValue = "f32", description = "Compute precision: f32, f64, or bf16 (bf16 activations, F32 LoRA weights; for GPUs). Default: ${DEFAULT-VALUE}.")
    Precision precision = Precision.f32;

    Backend create() {
        return Backends.create(backend != null ? backend : Backends.requestedName());
    }

    DType computeType() {
        return precision.dtype;
    }
}
