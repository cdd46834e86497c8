package dev.jsloth.data;

/**
 * The classic Stanford Alpaca prompt:
 *
 * <pre>
 * Below is an instruction that describes a task[, paired with an input that provides further context]. Write a response that appropriately completes the request.
 *
 * ### Instruction:
 * {instruction}
 *
 * ### Input:          (only when there is an input)
 * {input}
 *
 * ### Response:
 * </pre>
 *
 * The response follows the prompt directly. The same pieces make up the built-in {@code alpaca} chat template.
 */
public final class AlpacaPrompt {
    /** The preamble of a prompt without an input. */
    public static final String PREAMBLE =
            "Below is an instruction that describes a task. Write a response that appropriately completes the request.";
    /** The preamble of a prompt with an input. */
    public static final String PREAMBLE_WITH_INPUT =
            "Below is an instruction that describes a task, paired with an input that provides further context. "
            + "Write a response that appropriately completes the request.";
    static final String INSTRUCTION_HEADER = "\n\n### Instruction:\n";
    static final String INPUT_HEADER = "\n\n### Input:\n";
    static final String RESPONSE_HEADER = "\n\n### Response:\n";

    private AlpacaPrompt() {
    }

    /** The prompt for an instruction and an optional input (empty or null for none), ending with the response header. */
    public static String prompt(String instruction, String input) {
        boolean hasInput = input != null && !input.isEmpty();
        StringBuilder p = new StringBuilder(hasInput ? PREAMBLE_WITH_INPUT : PREAMBLE)
                .append(INSTRUCTION_HEADER).append(instruction);
        if (hasInput) p.append(INPUT_HEADER).append(input);
        return p.append(RESPONSE_HEADER).toString();
    }
}
