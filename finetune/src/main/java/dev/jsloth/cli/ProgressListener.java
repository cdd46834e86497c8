package dev.jsloth.cli;

import dev.jsloth.train.TrainingListener;
import dev.jsloth.train.TrainingSummary;
import me.tongfei.progressbar.ProgressBar;
import me.tongfei.progressbar.ProgressBarBuilder;
import me.tongfei.progressbar.ProgressBarStyle;

import java.nio.file.Path;
import java.time.Duration;
import java.time.temporal.ChronoUnit;
import java.util.Locale;

/**
 * Shows training progress with the progressbar library (step, loss, tokens/s, ETA) on a terminal; when output is
 * not a terminal (logs, CI), prints a plain line every few steps instead of redrawing a bar.
 */
final class ProgressListener implements TrainingListener {
    private ProgressBar bar;
    private long total, every;

    @Override
    public void onStart(long startStep, long totalSteps) {
        total = totalSteps;
        every = Math.max(1, totalSteps / 10);
        if (System.console() == null) return;
        bar = new ProgressBarBuilder().setTaskName("train").setInitialMax(totalSteps).startsFrom(startStep, Duration.ZERO)
                .setStyle(ProgressBarStyle.ASCII).setUpdateIntervalMillis(250).setSpeedUnit(ChronoUnit.SECONDS)
                .showSpeed().continuousUpdate().build();
    }

    @Override
    public void onStep(StepMetrics m) {
        if (bar == null) {
            if (m.step() % every == 0 || m.step() == total || m.step() == 1)
                System.out.printf(Locale.ROOT, "step %d/%d  loss %.4f  %,.0f tok/s  lr %.2e%n", m.step(), total, m.loss(), m.tokensPerSecond(), m.learningRate());
            return;
        }
        bar.stepTo(m.step());
        bar.setExtraMessage(String.format(Locale.ROOT, " loss %.4f  %,.0f tok/s  lr %.2e", m.loss(), m.tokensPerSecond(), m.learningRate()));
    }

    @Override
    public void onEval(long step, double evalLoss) {
        if (bar == null) {
            System.out.printf(Locale.ROOT, "step %d  eval loss %.4f%n", step, evalLoss);
            return;
        }
        bar.setExtraMessage(String.format(Locale.ROOT, " eval loss %.4f", evalLoss));
    }

    @Override
    public void onCheckpoint(long step, Path dir) {
        // the checkpoint path is reported in the summary; keep the bar on one line
    }

    @Override
    public void onEnd(TrainingSummary s) {
        if (bar != null) bar.close();
    }
}
