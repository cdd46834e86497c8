package dev.jsloth.train;

import java.nio.file.Path;

/**
 * What a finished run reports: time, throughput, losses, memory, and where its outputs are. {@code tokensPerSecond} is
 * over the whole run; {@code steadyTokensPerSecond} after its first fifth of steps (NaN under three steps), without the
 * start's one-off costs.
 */
public record TrainingSummary(long steps, double seconds, long tokens, double tokensPerSecond, double steadyTokensPerSecond, double firstLoss,
                              double lastLoss, Double evalLoss, long peakBackendBytes, long peakHeapBytes,
                              Path adapterDir, Path metricsFile, Path plotFile) {
}
