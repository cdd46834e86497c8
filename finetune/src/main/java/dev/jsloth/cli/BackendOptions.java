package dev.jsloth.cli;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.spi.Backends;
import picocli.CommandLine.Option;

/** {@code --backend} and {@code --precision}, shared by the commands that compute. */
final class BackendOptions {
    enum Precision { f32, f64 }

    @Option(names = "--backend", paramLabel = "NAME", description = "Backend to run on (default: ${jsloth.backend} or JSLOTH_BACKEND, else the best available). See 'jsloth backends'.")
    String backend;

    @Option(names = "--precision", paramLabel = "f32|f64", defaultValue = "f32", description = "Compute precision (default: ${DEFAULT-VALUE}).")
    Precision precision = Precision.f32;

    Backend create() {
        return Backends.create(backend != null ? backend : Backends.requestedName());
    }

    DType computeType() {
        return precision == Precision.f64 ? DType.F64 : DType.F32;
    }
}
