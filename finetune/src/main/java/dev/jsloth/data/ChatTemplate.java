package dev.jsloth.data;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;

/**
 * A Hugging Face style Jinja chat template, rendered in a sandbox (see {@link JinjaSandbox}): it cannot load files,
 * reach Java objects or methods, or run unbounded, and its errors surface as {@link TemplateException}.
 *
 * <p>A render sees the variables Hugging Face provides: {@code messages} (a list of {@code {role, content}} dicts),
 * {@code add_generation_prompt}, {@code bos_token}, {@code eos_token} (empty strings when the tokenizer has none), and
 * the functions {@code raise_exception(msg)} and {@code strftime_now(fmt)}. Python string methods such as
 * {@code .strip()} and {@code .startswith()}, and the filters {@code tojson}, {@code trim} and {@code items}, behave
 * as in Python/Jinja2. Blocks are rendered with {@code trim_blocks} and {@code lstrip_blocks}, as in transformers.
 */
public final class ChatTemplate {
    /** Template sources longer than this are refused. */
    public static final int MAX_SOURCE_CHARS = 1 << 20;
    private static final long MAX_CONFIG_BYTES = 64L << 20;
    private static final ObjectMapper MAPPER = new ObjectMapper();

    private final String source;
    private final String bosToken;
    private final String eosToken;

    private ChatTemplate(String source, String bosToken, String eosToken) {
        this.source = source;
        this.bosToken = bosToken;
        this.eosToken = eosToken;
    }

    /**
     * A template from its Jinja source.
     *
     * @param bosToken the tokenizer's BOS token text, or null if it has none
     * @param eosToken the tokenizer's EOS token text, or null if it has none
     * @throws TemplateException if the source is too long or uses filters or tests the sandbox does not have
     */
    public static ChatTemplate of(String source, String bosToken, String eosToken) throws TemplateException {
        Objects.requireNonNull(source, "source");
        if (source.length() > MAX_SOURCE_CHARS)
            throw new TemplateException("chat template is " + source.length() + " characters, more than the " + MAX_SOURCE_CHARS + " allowed");
        JinjaSandbox.check(source);
        return new ChatTemplate(source, bosToken, eosToken);
    }

    /**
     * A built-in template: {@code "llama3"}, {@code "chatml"} or {@code "alpaca"}, with the format's own special
     * tokens (llama3: {@code <|begin_of_text|>}/{@code <|eot_id|>}; chatml: none/{@code <|im_end|>}; alpaca: none);
     * see {@link #builtin(String, String, String)}. The alpaca template gets no EOS after responses this way: pass the
     * tokenizer's EOS to the three-argument form.
     */
    public static ChatTemplate builtin(String name) {
        return builtin(name, null, null);
    }

    /**
     * A built-in template with the tokenizer's special tokens (null for the format's own, as in {@link #builtin(String)}).
     * <ul>
     *   <li>{@code llama3}: {@code <|begin_of_text|>}, then per message
     *       {@code <|start_header_id|>ROLE<|end_header_id|>\n\nCONTENT<|eot_id|>}; generation prompt
     *       {@code <|start_header_id|>assistant<|end_header_id|>\n\n}.</li>
     *   <li>{@code chatml}: per message {@code <|im_start|>ROLE\nCONTENT<|im_end|>\n}; generation prompt
     *       {@code <|im_start|>assistant\n}.</li>
     *   <li>{@code alpaca}: the {@link AlpacaPrompt} preamble (or a leading system message), then
     *       {@code ### Instruction:} for user messages ({@code ### Input:} for a user message right after another),
     *       and {@code ### Response:} plus {@code eosToken} for assistant messages; generation prompt
     *       {@code \n\n### Response:\n}.</li>
     * </ul>
     *
     * @throws IllegalArgumentException for an unknown name
     */
    public static ChatTemplate builtin(String name, String bosToken, String eosToken) {
        String source = BuiltinTemplates.source(name);
        if (source == null)
            throw new IllegalArgumentException("unknown built-in chat template \"" + name + "\"; known: " + String.join(", ", BuiltinTemplates.NAMES));
        return new ChatTemplate(source,
                bosToken != null ? bosToken : BuiltinTemplates.defaultBos(name),
                eosToken != null ? eosToken : BuiltinTemplates.defaultEos(name));
    }

    /** The names accepted by {@link #builtin(String)}. */
    public static List<String> builtinNames() {
        return BuiltinTemplates.NAMES;
    }

    /**
     * The chat template of a Hugging Face {@code tokenizer_config.json}: its {@code chat_template} (a string, or a list
     * of {@code {name, template}} of which {@code "default"} is used), or else a {@code chat_template.jinja} file next
     * to it; with {@code bos_token}/{@code eos_token} (strings or {@code {content: ...}} objects).
     *
     * @return empty if the config has no chat template
     * @throws DatasetException if the file is not valid JSON or its fields have the wrong types
     */
    public static Optional<ChatTemplate> fromTokenizerConfig(Path tokenizerConfigJson) throws IOException {
        String name = tokenizerConfigJson.toString();
        long size = Files.size(tokenizerConfigJson);
        if (size > MAX_CONFIG_BYTES) throw new DatasetException(name + ": file is " + size + " bytes, too large for a tokenizer config");
        JsonNode config;
        try {
            config = MAPPER.readTree(Files.readAllBytes(tokenizerConfigJson));
        } catch (JsonProcessingException e) {
            throw new DatasetException(name + ": invalid JSON: " + e.getOriginalMessage(), e);
        }
        if (config == null || !config.isObject()) throw new DatasetException(name + ": expected a JSON object");
        String bos = tokenText(config, "bos_token", name);
        String eos = tokenText(config, "eos_token", name);
        String source = chatTemplateSource(config.get("chat_template"), name);
        if (source == null) {
            Path parent = tokenizerConfigJson.toAbsolutePath().getParent();
            Path jinja = parent == null ? null : parent.resolve("chat_template.jinja");
            if (jinja != null && Files.isRegularFile(jinja)) {
                if (Files.size(jinja) > 4L * MAX_SOURCE_CHARS) throw new TemplateException(jinja + ": too large for a chat template");
                source = Files.readString(jinja, StandardCharsets.UTF_8);
            }
        }
        return source == null ? Optional.empty() : Optional.of(of(source, bos, eos));
    }

    private static String chatTemplateSource(JsonNode t, String file) throws DatasetException {
        if (t == null || t.isNull()) return null;
        if (t.isTextual()) return t.textValue();
        if (t.isArray()) {
            List<String> names = new ArrayList<>();
            for (JsonNode entry : t) {
                JsonNode n = entry.get("name");
                JsonNode src = entry.get("template");
                if (n == null || !n.isTextual() || src == null || !src.isTextual())
                    throw new DatasetException(file + ": \"chat_template\" entries must be {\"name\": string, \"template\": string}");
                if (n.textValue().equals("default")) return src.textValue();
                names.add(n.textValue());
            }
            throw new DatasetException(file + ": \"chat_template\" has no \"default\" template (it has: " + String.join(", ", names) + ")");
        }
        throw new DatasetException(file + ": \"chat_template\" must be a string or a list of named templates");
    }

    private static String tokenText(JsonNode config, String field, String file) throws DatasetException {
        JsonNode t = config.get(field);
        if (t == null || t.isNull()) return null;
        if (t.isTextual()) return t.textValue();
        if (t.isObject() && t.get("content") != null && t.get("content").isTextual()) return t.get("content").textValue();
        throw new DatasetException(file + ": \"" + field + "\" must be a string or an object with a \"content\" string");
    }

    /**
     * Renders a conversation.
     *
     * @param addGenerationPrompt append the header that starts an assistant turn
     * @throws TemplateException if the template fails, raises, or exceeds a sandbox limit
     */
    public String render(List<Message> messages, boolean addGenerationPrompt) throws TemplateException {
        List<Map<String, Object>> data = new ArrayList<>(messages.size());
        for (Message m : messages) {
            Map<String, Object> map = new LinkedHashMap<>();
            map.put("role", m.role());
            map.put("content", m.content());
            data.add(map);
        }
        Map<String, Object> variables = new HashMap<>();
        variables.put("messages", data);
        variables.put("add_generation_prompt", addGenerationPrompt);
        variables.put("bos_token", bosToken == null ? "" : bosToken);
        variables.put("eos_token", eosToken == null ? "" : eosToken);
        // transformers' global functions are also defined names: Llama 3.2's template tests "strftime_now is defined"
        // before it writes today's date (else a fixed one)
        variables.put("strftime_now", "strftime_now");
        variables.put("raise_exception", "raise_exception");
        return JinjaSandbox.render(source, variables);
    }

    /** The Jinja source. */
    public String source() {
        return source;
    }

    /** The BOS token text the template renders as {@code bos_token}, if the tokenizer has one. */
    public Optional<String> bosToken() {
        return Optional.ofNullable(bosToken).filter(s -> !s.isEmpty());
    }

    /** The EOS token text the template renders as {@code eos_token}, if the tokenizer has one. */
    public Optional<String> eosToken() {
        return Optional.ofNullable(eosToken).filter(s -> !s.isEmpty());
    }
}
