package dev.jsloth.train;

import java.nio.file.Path;

/** Callbacks of a training run (progress display, metrics sinks, early stopping by throwing). */
public interface TrainingListener {
    /** One optimizer step's figures. */
    record StepMetrics(long step, long totalSteps, int epoch, double loss, double learningRate, double gradNorm,
                       long tokens, double tokensPerSecond, double elapsedSeconds, boolean skipped) {
    }

    default void onStart(long startStep, long totalSteps) {
    }

    default void onStep(StepMetrics m) {
    }

    default void onEval(long step, double evalLoss) {
    }

    default void onCheckpoint(long step, Path dir) {
    }

    default void onEnd(TrainingSummary summary) {
    }
}
