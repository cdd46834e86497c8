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

/** Shows training progress with the progressbar library: step, loss, tokens/s, ETA. */
final class ProgressListener implements TrainingListener {
    private ProgressBar bar;

    @Override
    public void onStart(long startStep, long totalSteps) {
        bar = new ProgressBarBuilder().setTaskName("train").setInitialMax(totalSteps).startsFrom(startStep, Duration.ZERO)
                .setStyle(ProgressBarStyle.ASCII).setUpdateIntervalMillis(250).setSpeedUnit(ChronoUnit.SECONDS)
                .showSpeed().continuousUpdate().build();
    }

    @Override
    public void onStep(StepMetrics m) {
        bar.stepTo(m.step());
        bar.setExtraMessage(String.format(Locale.ROOT, " loss %.4f  %,.0f tok/s  lr %.2e", m.loss(), m.tokensPerSecond(), m.learningRate()));
    }

    @Override
    public void onEval(long step, double evalLoss) {
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
