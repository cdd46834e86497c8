package dev.jsloth.data;

import java.util.List;

/** The Jinja sources of the built-in chat templates (see {@link ChatTemplate#builtin(String)}). */
final class BuiltinTemplates {
    static final List<String> NAMES = List.of("llama3", "chatml", "alpaca");

    private BuiltinTemplates() {
    }

    /** The source of a built-in template, or null for an unknown name. */
    static String source(String name) {
        return switch (name) {
            case "llama3" -> LLAMA3;
            case "chatml" -> CHATML;
            case "alpaca" -> ALPACA;
            default -> null;
        };
    }

    /** The BOS text a built-in template writes itself, or null. */
    static String defaultBos(String name) {
        return name.equals("llama3") ? "<|begin_of_text|>" : null;
    }

    /** The end-of-turn text a built-in template writes itself, or null. */
    static String defaultEos(String name) {
        return switch (name) {
            case "llama3" -> "<|eot_id|>";
            case "chatml" -> "<|im_end|>";
            default -> null;
        };
    }

    /** Llama 3: {@code <|begin_of_text|>}, then a header and {@code <|eot_id|>} around each message. */
    private static final String LLAMA3 = """
            {{- '<|begin_of_text|>' -}}
            {%- for message in messages -%}
            {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] + '<|eot_id|>' -}}
            {%- endfor -%}
            {%- if add_generation_prompt -%}
            {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}
            {%- endif -%}
            """;

    /** ChatML: {@code <|im_start|>ROLE\n...<|im_end|>\n} per message. */
    private static final String CHATML = """
            {%- for message in messages -%}
            {{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}
            {%- endfor -%}
            {%- if add_generation_prompt -%}
            {{- '<|im_start|>assistant\\n' -}}
            {%- endif -%}
            """;

    /**
     * Alpaca for conversations: an optional leading system message replaces the preamble; a user message is an
     * instruction, or the input of the instruction just before it; an assistant message is a response ended by
     * {@code eos_token}. A single [user, assistant] turn renders exactly as {@link AlpacaPrompt#prompt} plus the
     * response and {@code eos_token}.
     */
    private static final String ALPACA = """
            {%- if messages and messages[0]['role'] == 'system' -%}
            {%- set preamble = messages[0]['content'] -%}
            {%- set loop_messages = messages[1:] -%}
            {%- else -%}
            {%- set loop_messages = messages -%}
            {%- if loop_messages|length > 1 and loop_messages[0]['role'] == 'user' and loop_messages[1]['role'] == 'user' -%}
            {%- set preamble = 'PREAMBLE_WITH_INPUT' -%}
            {%- else -%}
            {%- set preamble = 'PREAMBLE' -%}
            {%- endif -%}
            {%- endif -%}
            {{- preamble -}}
            {%- for message in loop_messages -%}
            {%- if message['role'] == 'user' -%}
            {%- if loop.index0 > 0 and loop_messages[loop.index0 - 1]['role'] == 'user' -%}
            {{- 'INPUT_HEADER' + message['content'] -}}
            {%- else -%}
            {{- 'INSTRUCTION_HEADER' + message['content'] -}}
            {%- endif -%}
            {%- elif message['role'] == 'assistant' -%}
            {{- 'RESPONSE_HEADER' + message['content'] + eos_token -}}
            {%- else -%}
            {{- raise_exception('the alpaca template allows a system message only first') -}}
            {%- endif -%}
            {%- endfor -%}
            {%- if add_generation_prompt -%}
            {{- 'RESPONSE_HEADER' -}}
            {%- endif -%}
            """
            .replace("'PREAMBLE_WITH_INPUT'", literal(AlpacaPrompt.PREAMBLE_WITH_INPUT))
            .replace("'PREAMBLE'", literal(AlpacaPrompt.PREAMBLE))
            .replace("'INPUT_HEADER'", literal(AlpacaPrompt.INPUT_HEADER))
            .replace("'INSTRUCTION_HEADER'", literal(AlpacaPrompt.INSTRUCTION_HEADER))
            .replace("'RESPONSE_HEADER'", literal(AlpacaPrompt.RESPONSE_HEADER));

    /** A Jinja single-quoted string literal for {@code s}. */
    private static String literal(String s) {
        return "'" + s.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'";
    }
}
