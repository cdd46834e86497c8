package dev.jsloth.api;

import java.util.Locale;

/**
 * A backend could not allocate a tensor. The message gives the size asked for, what the backend's tensors already
 * hold, and what to change.
 */
public class DeviceOutOfMemoryException extends RuntimeException {
    private final long requestedBytes;

    public DeviceOutOfMemoryException(String device, long requestedBytes, long liveBytes, String detail) {
        super(String.format(Locale.ROOT, "%s: out of memory allocating %s (tensors already hold %s)%s. "
                        + "Reduce --batch-size or --seq-len, keep gradient checkpointing on (do not pass --no-gc), "
                        + "or use --qlora for 4-bit base weights.",
                device, human(requestedBytes), human(liveBytes), detail == null || detail.isEmpty() ? "" : "; " + detail));
        this.requestedBytes = requestedBytes;
    }

    public long requestedBytes() {
        return requestedBytes;
    }

    static String human(long b) {
        if (b < 1024) return b + " B";
        double v = b;
        String[] u = {"KiB", "MiB", "GiB", "TiB", "PiB"};
        int i = -1;
        while (v >= 1024 && i < u.length - 1) {
            v /= 1024;
            i++;
        }
        return String.format(Locale.ROOT, "%.1f %s", v, u[i]);
    }
}
