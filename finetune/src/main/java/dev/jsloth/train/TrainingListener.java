package dev.jsloth.train;

import java.nio.file.Path;

/**
 * Callbacks of a training run (progress display, metrics sinks, early stopping). To stop early, throw
 * {@link StopTraining} from {@link #onStep} or {@link #onEval}: the run ends after that step as it would at its last
 * one (final evaluation, adapter, loss plot and summary written; with several ranks every rank stops there). Any other
 * exception aborts the run with nothing more written (checkpoints already saved stay).
 */
public interface TrainingListener {
    /** Ends the run after the current step, keeping what it trained (see {@link TrainingListener}). */
    final class StopTraining extends RuntimeException {
        public StopTraining(String reason) {
            super(reason, null, false, false);
        }
    }

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
