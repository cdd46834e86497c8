package dev.jsloth.train;

import org.knowm.xchart.BitmapEncoder;
import org.knowm.xchart.XYChart;
import org.knowm.xchart.XYChartBuilder;
import org.knowm.xchart.XYSeries;

import java.io.IOException;
import java.nio.file.Path;
import java.util.List;

/** The loss curve (training, and evaluation when present) as a PNG, drawn headless with XChart. */
public final class LossPlot {
    private LossPlot() {
    }

    public static void write(Path png, List<double[]> train, List<double[]> eval) throws IOException {
        System.setProperty("java.awt.headless", "true");
        XYChart chart = new XYChartBuilder().width(900).height(500).title("jsloth training loss").xAxisTitle("step").yAxisTitle("loss").build();
        chart.getStyler().setMarkerSize(3);
        add(chart, "train", train);
        if (!eval.isEmpty()) add(chart, "eval", eval);
        String name = png.getFileName().toString();
        Path base = png.resolveSibling(name.endsWith(".png") ? name.substring(0, name.length() - 4) : name);
        BitmapEncoder.saveBitmap(chart, base.toString(), BitmapEncoder.BitmapFormat.PNG);
    }

    private static void add(XYChart chart, String name, List<double[]> points) {
        double[] x = new double[points.size()], y = new double[points.size()];
        for (int i = 0; i < x.length; i++) {
            x[i] = points.get(i)[0];
            y[i] = points.get(i)[1];
        }
        if (x.length == 0) return;
        chart.addSeries(name, x, y).setXYSeriesRenderStyle(XYSeries.XYSeriesRenderStyle.Line);
    }
}
