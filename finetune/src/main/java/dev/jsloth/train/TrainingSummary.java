package dev.jsloth.train;

import java.nio.file.Path;

/** What a finished run reports: time, throughput, losses, memory, and where its outputs are. */
public record TrainingSummary(long steps, double seconds, long tokens, double tokensPerSecond, double firstLoss,
                              double lastLoss, Double evalLoss, long peakBackendBytes, long peakHeapBytes,
                              Path adapterDir, Path metricsFile, Path plotFile) {
}
