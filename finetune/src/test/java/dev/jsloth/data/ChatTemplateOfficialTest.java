package dev.jsloth.data;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Official Hugging Face chat templates render as transformers renders them (expected strings checked against Jinja2
 * with transformers' settings). The Llama 3.1 and Qwen 2.5 templates are copies of their tokenizer_config.json
 * {@code chat_template}s, in test resources.
 */
class ChatTemplateOfficialTest {
    static final List<Message> WITH_SYSTEM = List.of(
            new Message("system", "You are a helpful assistant."),
            new Message("user", "Hello!"),
            new Message("assistant", "Hi there."),
            new Message("user", "How are you?"),
            new Message("assistant", "  Fine, thanks.  "));
    static final List<Message> NO_SYSTEM = List.of(
            new Message("user", "Hello!"),
            new Message("assistant", "Hi there."),
            new Message("user", "How are you?"),
            new Message("assistant", "Fine, thanks."));

    /** Mistral-7B-Instruct-v0.2's chat_template. */
    static final String MISTRAL = "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
            + "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
            + "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
            + "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
            + "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

    /** TinyLlama-1.1B-Chat-v1.0's (and Zephyr's) chat_template; it relies on trim_blocks. */
    static final String ZEPHYR = "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n"
            + "{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n"
            + "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n"
            + "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";

    static Path resource(String name) throws URISyntaxException {
        return Path.of(ChatTemplateOfficialTest.class.getResource(name).toURI());
    }

    static ChatTemplate llama31() throws Exception {
        return ChatTemplate.fromTokenizerConfig(resource("llama-3.1-tokenizer_config.json")).orElseThrow();
    }

    static ChatTemplate qwen25() throws Exception {
        return ChatTemplate.fromTokenizerConfig(resource("qwen2.5-tokenizer_config.json")).orElseThrow();
    }

    @Test
    void llama31TwoTurns() throws Exception {
        ChatTemplate t = llama31();
        assertEquals("<|begin_of_text|>", t.bosToken().orElseThrow());
        assertEquals("<|eot_id|>", t.eosToken().orElseThrow());
        String header = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                        + "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n";
        String turns = "<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>"
                       + "<|start_header_id|>assistant<|end_header_id|>\n\nHi there.<|eot_id|>"
                       + "<|start_header_id|>user<|end_header_id|>\n\nHow are you?<|eot_id|>"
                       + "<|start_header_id|>assistant<|end_header_id|>\n\nFine, thanks.<|eot_id|>";
        assertEquals(header + "You are a helpful assistant.<|eot_id|>" + turns, t.render(WITH_SYSTEM, false));
        assertEquals(header + "<|eot_id|>" + turns + "<|start_header_id|>assistant<|end_header_id|>\n\n", t.render(NO_SYSTEM, true));
    }

    @Test
    void qwen25TwoTurns() throws Exception {
        ChatTemplate t = qwen25();
        assertTrue(t.bosToken().isEmpty());
        assertEquals("<|im_end|>", t.eosToken().orElseThrow());
        assertEquals("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                     + "<|im_start|>user\nHello!<|im_end|>\n"
                     + "<|im_start|>assistant\nHi there.<|im_end|>\n"
                     + "<|im_start|>user\nHow are you?<|im_end|>\n"
                     + "<|im_start|>assistant\n  Fine, thanks.  <|im_end|>\n", t.render(WITH_SYSTEM, false));
        assertEquals("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
                     + "<|im_start|>user\nHello!<|im_end|>\n"
                     + "<|im_start|>assistant\nHi there.<|im_end|>\n"
                     + "<|im_start|>user\nHow are you?<|im_end|>\n"
                     + "<|im_start|>assistant\nFine, thanks.<|im_end|>\n"
                     + "<|im_start|>assistant\n", t.render(NO_SYSTEM, true));
    }

    @Test
    void mistralTwoTurnsAndItsRaisedException() throws Exception {
        ChatTemplate t = ChatTemplate.of(MISTRAL, "<s>", "</s>");
        assertEquals("<s>[INST] Hello! [/INST]Hi there.</s>[INST] How are you? [/INST]Fine, thanks.</s>", t.render(NO_SYSTEM, false));
        TemplateException e = assertThrows(TemplateException.class, () -> t.render(WITH_SYSTEM, false));
        assertEquals("chat template raised an exception: Conversation roles must alternate user/assistant/user/assistant/...", e.getMessage());
    }

    @Test
    void zephyrTwoTurns() throws Exception {
        ChatTemplate t = ChatTemplate.of(ZEPHYR, "<s>", "</s>");
        assertEquals("<|system|>\nYou are a helpful assistant.</s>\n<|user|>\nHello!</s>\n<|assistant|>\nHi there.</s>\n"
                     + "<|user|>\nHow are you?</s>\n<|assistant|>\n  Fine, thanks.  </s>\n", t.render(WITH_SYSTEM, false));
        assertEquals("<|user|>\nHello!</s>\n<|assistant|>\nHi there.</s>\n<|user|>\nHow are you?</s>\n<|assistant|>\nFine, thanks.</s>\n"
                     + "<|assistant|>\n", t.render(NO_SYSTEM, true));
    }

    @Test
    void tokenizerConfigVariants(@TempDir Path dir) throws Exception {
        Path named = dir.resolve("named.json");
        Files.writeString(named, """
                {"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": {"content": "</s>"},
                 "chat_template": [{"name": "tool_use", "template": "TOOLS"}, {"name": "default", "template": "{{ bos_token }}{{ messages[0]['content'] }}{{ eos_token }}"}]}
                """);
        ChatTemplate t = ChatTemplate.fromTokenizerConfig(named).orElseThrow();
        assertEquals("<s>hi</s>", t.render(List.of(new Message("user", "hi")), false));

        Path none = dir.resolve("none.json");
        Files.writeString(none, "{\"bos_token\": \"<s>\", \"chat_template\": null}");
        assertEquals(Optional.empty(), ChatTemplate.fromTokenizerConfig(none));

        Path noDefault = dir.resolve("nodefault.json");
        Files.writeString(noDefault, "{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"x\"}]}");
        assertTrue(assertThrows(DatasetException.class, () -> ChatTemplate.fromTokenizerConfig(noDefault))
                .getMessage().contains("no \"default\" template (it has: tool_use)"));

        Path invalid = dir.resolve("invalid.json");
        Files.writeString(invalid, "{\"chat_template\": ");
        assertTrue(assertThrows(DatasetException.class, () -> ChatTemplate.fromTokenizerConfig(invalid)).getMessage().contains("invalid JSON"));
        Path badToken = dir.resolve("badtoken.json");
        Files.writeString(badToken, "{\"bos_token\": 1, \"chat_template\": \"x\"}");
        assertTrue(assertThrows(DatasetException.class, () -> ChatTemplate.fromTokenizerConfig(badToken)).getMessage().contains("\"bos_token\""));

        Path badType = dir.resolve("badtype.json");
        Files.writeString(badType, "{\"chat_template\": 7}");
        assertThrows(DatasetException.class, () -> ChatTemplate.fromTokenizerConfig(badType));

        Path sub = Files.createDirectory(dir.resolve("model"));
        Files.writeString(sub.resolve("tokenizer_config.json"), "{\"eos_token\": \"<|im_end|>\"}");
        Files.writeString(sub.resolve("chat_template.jinja"), "{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}");
        assertEquals("a<|im_end|>", ChatTemplate.fromTokenizerConfig(sub.resolve("tokenizer_config.json")).orElseThrow()
                .render(List.of(new Message("user", "a")), false));
    }
}
