package dev.jsloth.data;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Hostile or broken templates fail with a TemplateException (or render nothing harmful), and never run unbounded. */
class ChatTemplateSandboxTest {
    static final List<Message> CHAT = List.of(new Message("user", "Hi {{ 7 * 7 }} {% if true %}x{% endif %}"), new Message("assistant", "Yo"));

    static String render(String source) throws TemplateException {
        return ChatTemplate.of(source, "<s>", "</s>").render(CHAT, false);
    }

    static TemplateException fails(String source) {
        return assertThrows(TemplateException.class, () -> render(source));
    }

    @ParameterizedTest
    @ValueSource(strings = {
            "{% include 'secrets.txt' %}",
            "{% import 'macros.j2' as m %}",
            "{% from 'macros.j2' import f %}",
            "{% extends '/etc/passwd' %}"})
    void loadingOtherTemplatesIsRefused(String source) {
        assertTrue(fails(source).getMessage().contains("disabled"), source);
    }

    @ParameterizedTest
    @ValueSource(strings = {
            "{{ ''.getClass() }}",
            "{{ ''.getClass().forName('java.lang.Runtime') }}",
            "{{ messages.getClass() }}",
            "{{ messages[0].getClass() }}",
            "{{ messages[0].content.getBytes() }}",
            "{{ messages[0].content.toString() }}",
            "{{ messages.size() }}",
            "{{ messages[0].entrySet() }}",
            "{% for m in messages %}{{ loop.getClass() }}{% endfor %}",
            "{{ range(3).getClass() }}",
            "{{ namespace().getClass() }}"})
    void javaMethodsAreNotReachable(String source) {
        assertTrue(fails(source).getMessage().contains("has no method"), source);
    }

    /** Java getters are not properties: reading one fails the render or gives nothing, never the Java value. */
    @ParameterizedTest
    @ValueSource(strings = {"{{ ''.class }}", "{{ messages.class }}", "{{ messages[0]|attr('class') }}", "{{ messages[0].content.blank }}",
            "{{ messages[0].content.bytes }}", "{% for m in messages %}{{ loop.class }}{% endfor %}", "{{ messages|map(attribute='class')|list }}"})
    void javaPropertiesAreNotReachable(String source) {
        try {
            String out = render(source);
            assertTrue(out.isEmpty() || out.equals("[None, None]"), source + " rendered " + out);
        } catch (TemplateException e) {
            assertTrue(e.getMessage().contains("Cannot resolve property"), e.getMessage());
        }
    }

    @Test
    void theInterpreterCannotBeNamed() {
        assertTrue(fails("{{ ____int3rpr3t3r____ }}").getMessage().contains("reserved name"));
    }

    @ParameterizedTest
    @ValueSource(strings = {"{{ 'a: 1'|fromyaml }}", "{{ '{}'|fromjson }}", "{{ '{{ 1 }}'|render }}", "{{ messages|pprint }}", "{{ messages|random }}"})
    void dangerousFiltersAreDisabled(String source) {
        assertTrue(fails(source).getMessage().contains("disabled"), source);
    }

    @Test
    void unknownFiltersAndTestsAreRefusedUpFront() {
        TemplateException e = assertThrows(TemplateException.class, () -> ChatTemplate.of("{{ x|nosuch }}{% if x is odd or x is weird %}{% endif %}", null, null));
        assertEquals("chat template uses unsupported filter 'nosuch', test 'weird'", e.getMessage());
        // '|' inside string literals, comments and raw blocks is not a filter
        assertTrue(TemplateNames.code("{{ '<|im_start|>' }}{# x|y #}{% raw %}{{ a|b }}{% endraw %}{{ \"|\" }}").indexOf('|') < 0);
    }

    @Test
    void messageTextIsNeverInterpreted() throws TemplateException {
        assertEquals("Hi {{ 7 * 7 }} {% if true %}x{% endif %}|Yo|", render("{% for m in messages %}{{ m.content }}|{% endfor %}"));
    }

    @Test
    void runawayLoopIsCutOff() {
        TemplateException e = assertTimeoutPreemptively(java.time.Duration.ofSeconds(60), () -> fails(
                "{% for i in range(10000) %}{% for j in range(10000) %}{% if false %}x{% endif %}{% endfor %}{% endfor %}"));
        assertTrue(e.getMessage().contains("more than " + RenderGuard.MAX_NODES + " nodes"), e.getMessage());
    }

    @Test
    void hugeOutputIsCutOff() {
        String line = "x".repeat(100);
        TemplateException e = assertTimeoutPreemptively(java.time.Duration.ofSeconds(60), () -> fails(
                "{% for i in range(10000) %}{% for j in range(100) %}{{ '" + line + "' }}{% endfor %}{% endfor %}"));
        assertTrue(e.getMessage().contains("over limit"), e.getMessage());
        assertThrows(TemplateException.class, () -> render("{% set s = 'ab' %}{% for i in range(40) %}{% set s = s ~ s %}{% endfor %}{{ s|length }}"));
    }

    @Test
    void unboundedRecursionIsCutOff() {
        assertTrue(fails("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}").getMessage().contains("recursion"));
    }

    @Test
    void brokenTemplatesFailWithTheirError() {
        assertTrue(fails("{% for m in messages %}{{ m.content }}").getMessage().contains("endfor"));
        assertTrue(fails("{{ 'a' + }}").getMessage().contains("syntax error"));
        assertTrue(fails("{% generation_typo %}").getMessage().contains("Unknown tag"));
        assertThrows(TemplateException.class, () -> ChatTemplate.of("x".repeat(ChatTemplate.MAX_SOURCE_CHARS + 1), null, null));
    }

    @Test
    void renderStateDoesNotLeakBetweenRenders() throws TemplateException {
        fails("{{ raise_exception('first') }}");
        assertEquals("ok", render("ok"));
    }
}
