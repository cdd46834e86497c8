package dev.jsloth.api;

/** Memory held by a backend's tensors: bytes live now, the peak since creation (or the last reset), live count. */
public record MemoryStats(long liveBytes, long peakBytes, long liveTensors) {
}
