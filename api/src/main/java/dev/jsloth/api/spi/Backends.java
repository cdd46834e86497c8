package dev.jsloth.api.spi;

import dev.jsloth.api.Backend;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.ServiceLoader;

/**
 * Discovers backends with {@link ServiceLoader} and chooses one.
 *
 * <p>Selection: the name in system property {@value #PROPERTY}, else environment variable {@value #ENV};
 * when one is set, that backend or a clear error (unknown name, or the reason it is unavailable). Otherwise the
 * available backend with the highest priority.
 */
public final class Backends {
    public static final String PROPERTY = "jsloth.backend";
    public static final String ENV = "JSLOTH_BACKEND";

    /** One provider and what its availability check said. */
    public record Status(String name, int priority, Availability availability) {
    }

    private Backends() {
    }

    /** Every provider on the class path, highest priority first. */
    public static List<BackendProvider> providers() {
        List<BackendProvider> list = new ArrayList<>();
        ServiceLoader.load(BackendProvider.class).forEach(list::add);
        list.sort(Comparator.comparingInt(BackendProvider::priority).reversed()
                .thenComparing(BackendProvider::name));
        return list;
    }

    /** Every provider with its availability (what {@code jsloth backends} prints). */
    public static List<Status> statuses() {
        return statuses(providers());
    }

    public static List<Status> statuses(List<BackendProvider> providers) {
        return providers.stream().map(p -> new Status(p.name(), p.priority(), safeAvailability(p))).toList();
    }

    /** The name requested through the system property or the environment, or null. */
    public static String requestedName() {
        String n = System.getProperty(PROPERTY);
        if (n == null || n.isBlank()) n = System.getenv(ENV);
        return n == null || n.isBlank() ? null : n.trim();
    }

    /** Creates the backend chosen by the rules above. */
    public static Backend create() {
        return create(requestedName());
    }

    /** Creates the named backend, or the default one when {@code name} is null. */
    public static Backend create(String name) {
        return choose(name, providers()).create();
    }

    /** The provider chosen for {@code name} (null = default) among {@code providers}; throws with the reason. */
    public static BackendProvider choose(String name, List<BackendProvider> providers) {
        if (name != null) {
            String wanted = name.toLowerCase(Locale.ROOT);
            for (BackendProvider p : providers) {
                if (p.name().equalsIgnoreCase(wanted)) {
                    Availability a = safeAvailability(p);
                    if (!a.available())
                        throw new BackendUnavailableException("backend '" + p.name() + "' is unavailable: " + a.reason());
                    return p;
                }
            }
            throw new BackendUnavailableException("no backend named '" + name + "'; known backends: "
                    + describe(statuses(providers)));
        }
        // the first available in priority order; lower ones are not probed (probing OpenCL loads its ICDs, e.g. PoCL
        // and its LLVM, into a process that will not use them)
        List<BackendProvider> byPriority = new ArrayList<>(providers);
        byPriority.sort(Comparator.comparingInt(BackendProvider::priority).reversed());
        for (BackendProvider p : byPriority)
            if (safeAvailability(p).available()) return p;
        throw new BackendUnavailableException("no backend is available: " + describe(statuses(providers)));
    }

    private static Availability safeAvailability(BackendProvider p) {
        try {
            return p.availability();
        } catch (RuntimeException | LinkageError e) {
            return Availability.unavailable("availability check failed: " + e);
        }
    }

    private static String describe(List<Status> statuses) {
        if (statuses.isEmpty()) return "(none on the class path)";
        StringBuilder sb = new StringBuilder();
        for (Status s : statuses) {
            if (!sb.isEmpty()) sb.append("; ");
            sb.append(s.name()).append(s.availability().available() ? " (available)" : " (unavailable: " + s.availability().reason() + ")");
        }
        return sb.toString();
    }
}
