package dev.jsloth.data;

import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The built-in templates render exactly the documented formats (expected strings written by hand). */
class ChatTemplateBuiltinTest {
    static final List<Message> TWO_TURNS = List.of(
            new Message("system", "You are terse."),
            new Message("user", "Hi"),
            new Message("assistant", "Hello."),
            new Message("user", "Bye"),
            new Message("assistant", "Bye!"));

    static final List<Message> PROMPT = List.of(new Message("system", "You are terse."), new Message("user", "Hi"));

    @Test
    void llama3() throws Exception {
        ChatTemplate t = ChatTemplate.builtin("llama3");
        assertEquals("<|begin_of_text|>"
                     + "<|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
                     + "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                     + "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
                     + "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>"
                     + "<|start_header_id|>assistant<|end_header_id|>\n\nBye!<|eot_id|>", t.render(TWO_TURNS, false));
        assertEquals("<|begin_of_text|>"
                     + "<|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
                     + "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                     + "<|start_header_id|>assistant<|end_header_id|>\n\n", t.render(PROMPT, true));
    }

    @Test
    void chatml() throws Exception {
        ChatTemplate t = ChatTemplate.builtin("chatml");
        assertEquals("<|im_start|>system\nYou are terse.<|im_end|>\n"
                     + "<|im_start|>user\nHi<|im_end|>\n"
                     + "<|im_start|>assistant\nHello.<|im_end|>\n"
                     + "<|im_start|>user\nBye<|im_end|>\n"
                     + "<|im_start|>assistant\nBye!<|im_end|>\n", t.render(TWO_TURNS, false));
        assertEquals("<|im_start|>system\nYou are terse.<|im_end|>\n"
                     + "<|im_start|>user\nHi<|im_end|>\n"
                     + "<|im_start|>assistant\n", t.render(PROMPT, true));
        assertEquals("", t.render(List.of(), false));
    }

    @Test
    void alpacaSingleTurnIsTheClassicPrompt() throws Exception {
        ChatTemplate t = ChatTemplate.builtin("alpaca", null, "</s>");
        List<Message> turn = List.of(new Message("user", "Name a color."), new Message("assistant", "Blue."));
        String prompt = "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
                        + "### Instruction:\nName a color.\n\n### Response:\n";
        assertEquals(prompt + "Blue.</s>", t.render(turn, false));
        assertEquals(prompt, t.render(turn.subList(0, 1), true));
        assertEquals(prompt, AlpacaPrompt.prompt("Name a color.", ""));
    }

    @Test
    void alpacaWithInputSystemAndMultipleTurns() throws Exception {
        ChatTemplate t = ChatTemplate.builtin("alpaca", null, "</s>");
        String withInput = "Below is an instruction that describes a task, paired with an input that provides further context. "
                           + "Write a response that appropriately completes the request.\n\n"
                           + "### Instruction:\nTranslate.\n\n### Input:\nBonjour\n\n### Response:\n";
        List<Message> input = List.of(new Message("user", "Translate."), new Message("user", "Bonjour"), new Message("assistant", "Hello"));
        assertEquals(withInput + "Hello</s>", t.render(input, false));
        assertEquals(withInput, AlpacaPrompt.prompt("Translate.", "Bonjour"));

        assertEquals("Be brief.\n\n### Instruction:\nHi\n\n### Response:\nHello.</s>\n\n### Instruction:\nBye\n\n### Response:\nBye!</s>",
                t.render(List.of(new Message("system", "Be brief."), new Message("user", "Hi"), new Message("assistant", "Hello."),
                        new Message("user", "Bye"), new Message("assistant", "Bye!")), false));
        TemplateException e = assertThrows(TemplateException.class,
                () -> t.render(List.of(new Message("user", "Hi"), new Message("system", "late")), false));
        assertTrue(e.getMessage().contains("system message only first"), e.getMessage());
    }

    @Test
    void builtinTokensAndUnknownNames() {
        assertEquals(List.of("llama3", "chatml", "alpaca"), ChatTemplate.builtinNames());
        assertEquals("<|begin_of_text|>", ChatTemplate.builtin("llama3").bosToken().orElseThrow());
        assertEquals("<|eot_id|>", ChatTemplate.builtin("llama3").eosToken().orElseThrow());
        assertTrue(ChatTemplate.builtin("chatml").bosToken().isEmpty());
        assertEquals("<|im_end|>", ChatTemplate.builtin("chatml").eosToken().orElseThrow());
        assertTrue(ChatTemplate.builtin("alpaca").eosToken().isEmpty());
        assertEquals("</s>", ChatTemplate.builtin("alpaca", "<s>", "</s>").eosToken().orElseThrow());
        assertThrows(IllegalArgumentException.class, () -> ChatTemplate.builtin("vicuna"));
    }
}
