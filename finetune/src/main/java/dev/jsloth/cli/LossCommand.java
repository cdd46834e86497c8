package dev.jsloth.cli;

import com.fasterxml.jackson.databind.JsonNode;
import dev.jsloth.api.Backend;
import dev.jsloth.io.CheckpointFormatException;
import dev.jsloth.io.Json;
import dev.jsloth.model.Batch;
import dev.jsloth.model.LlamaModel;
import dev.jsloth.model.LoraAdapter;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;

/** {@code jsloth loss}: mean cross-entropy of a batch under a model (and adapter). */
@Command(name = "loss", mixinStandardHelpOptions = true,
        description = "Mean token cross-entropy of a batch (labels shifted by one as LlamaForCausalLM does; -100 ignored). Prints one JSON line.")
final class LossCommand implements Callable<Integer> {
    @Option(names = "--model", required = true, paramLabel = "DIR", description = "Hugging Face checkpoint directory (config.json + safetensors).")
    Path model;

    @Option(names = "--adapter", paramLabel = "DIR", description = "PEFT LoRA adapter directory.")
    Path adapter;

    @Option(names = "--batch", required = true, paramLabel = "FILE", description = "JSON {\"input_ids\": [[...], ...], \"labels\": [[...], ...]} (labels optional).")
    Path batchFile;

    @Mixin
    BackendOptions backendOptions;

    @Option(names = "--qlora", description = "Quantize the projection weights to NF4 at load (QLoRA base weights).")
    boolean qlora;

    @Override
    public Integer call() throws Exception {
        Batch batch = readBatch(batchFile);
        try (Backend be = backendOptions.create(); LlamaModel m = LlamaModel.load(model, be, backendOptions.computeType(),
                     qlora ? dev.jsloth.model.LlamaWeights.Quantization.NF4_DOUBLE : dev.jsloth.model.LlamaWeights.Quantization.NONE)) {
            LoraAdapter a = adapter == null ? null : m.loadAdapter(adapter);
            try {
                LlamaModel.LossResult r = m.loss(batch);
                Map<String, Object> out = new LinkedHashMap<>();
                out.put("loss", r.meanLoss());
                out.put("tokens", r.tokens());
                out.put("loss_sum", r.lossSum());
                out.put("backend", be.name());
                out.put("qlora", qlora || m.weights().hasNf4());
                out.put("weight_bytes", m.weights().backendBytes());
                out.put("precision", backendOptions.precision.name());
                JsonLine.print(out);
            } finally {
                if (a != null) a.close();
            }
        }
        return 0;
    }

    static Batch readBatch(Path file) throws Exception {
        JsonNode root = Json.read(file);
        if (!root.isObject()) throw new CheckpointFormatException(file, "", "must be a JSON object with \"input_ids\"");
        int[][] ids = matrix(file, root, "input_ids");
        if (ids == null) throw new CheckpointFormatException(file, "input_ids", "missing");
        int[][] labels = matrix(file, root, "labels");
        if (labels != null && labels.length != ids.length)
            throw new CheckpointFormatException(file, "labels", labels.length + " rows, input_ids has " + ids.length);
        for (int r = 0; r < ids.length; r++) {
            if (ids[r].length != ids[0].length)
                throw new CheckpointFormatException(file, "input_ids[" + r + "]", ids[r].length + " tokens, row 0 has " + ids[0].length + " (rows must be equal; pad and set labels to -100)");
            if (labels != null && labels[r].length != ids[r].length)
                throw new CheckpointFormatException(file, "labels[" + r + "]", labels[r].length + " labels for " + ids[r].length + " tokens");
        }
        if (ids.length == 0 || ids[0].length == 0) throw new CheckpointFormatException(file, "input_ids", "is empty");
        return Batch.of(ids, labels);
    }

    private static int[][] matrix(Path file, JsonNode root, String field) throws CheckpointFormatException {
        JsonNode n = root.get(field);
        if (n == null || n.isNull()) return null;
        if (!n.isArray()) throw new CheckpointFormatException(file, field, "must be a list of lists of integers");
        boolean flat = n.size() > 0 && n.get(0).isNumber(); // a single sequence is accepted as one row
        int[][] out = new int[flat ? 1 : n.size()][];
        for (int r = 0; r < out.length; r++) {
            JsonNode row = flat ? n : n.get(r);
            if (!row.isArray()) throw new CheckpointFormatException(file, field + "[" + r + "]", "must be a list of integers");
            out[r] = new int[row.size()];
            for (int c = 0; c < row.size(); c++) {
                JsonNode v = row.get(c);
                if (!v.isIntegralNumber() || !v.canConvertToInt())
                    throw new CheckpointFormatException(file, field + (flat ? "" : "[" + r + "]") + "[" + c + "]", "must be an integer, got " + v);
                out[r][c] = v.asInt();
            }
        }
        return out;
    }
}
