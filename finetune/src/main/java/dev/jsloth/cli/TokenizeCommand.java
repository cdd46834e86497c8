package dev.jsloth.cli;

import dev.jsloth.tokenizer.Tokenizer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;

/** {@code jsloth tokenize}: encode text with a Hugging Face tokenizer.json. */
@Command(name = "tokenize", mixinStandardHelpOptions = true, description = "Encode TEXT with DIR/tokenizer.json; prints one JSON line with \"ids\".")
final class TokenizeCommand implements Callable<Integer> {
    @Option(names = "--tokenizer", required = true, paramLabel = "DIR", description = "Directory holding tokenizer.json (or the file itself).")
    Path tokenizer;

    @Option(names = "--text", required = true, paramLabel = "TEXT")
    String text;

    @Option(names = "--special", description = "Apply the post-processor (e.g. add BOS), like add_special_tokens=True.")
    boolean special;

    @Option(names = "--decode", description = "Also print the decoded text.")
    boolean decode;

    @Override
    public Integer call() throws Exception {
        Tokenizer t = Tokenizer.load(tokenizer);
        int[] ids = t.encode(text, special);
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("ids", Arrays.stream(ids).boxed().toList());
        if (decode) out.put("text", t.decode(ids, false));
        JsonLine.print(out);
        return 0;
    }
}
