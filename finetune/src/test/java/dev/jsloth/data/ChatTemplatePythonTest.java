package dev.jsloth.data;

import org.junit.jupiter.api.Test;

import java.time.LocalDateTime;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The Python/Jinja2 behaviour HF templates depend on: str methods, dict/list methods, tojson, trim, items, loop. */
class ChatTemplatePythonTest {
    static String render(String source, Message... messages) throws TemplateException {
        return ChatTemplate.of(source, "<s>", "</s>").render(List.of(messages), false);
    }

    static String eval(String expression) throws TemplateException {
        return render("{{ " + expression + " }}", new Message("user", "  Hello, World \n"));
    }

    /** Llama 3.2's template writes today's date where strftime_now is defined (transformers defines it), else 26 Jul 2024. */
    @Test
    void hfGlobalFunctionsAreDefinedNames() throws TemplateException {
        String year = String.valueOf(java.time.LocalDate.now().getYear());
        String out = render("{% if strftime_now is defined %}{{ strftime_now('%Y') }}{% else %}fixed{% endif %}|{{ raise_exception is defined }}",
                new Message("user", "x"));
        assertTrue(out.equals(year + "|true") || out.equals(year + "|True"), out);
        TemplateException e = assertThrows(TemplateException.class, () -> render("{{ raise_exception('no system role') }}", new Message("user", "x")));
        assertTrue(e.getMessage().contains("no system role"), e.getMessage());
    }

    @Test
    void stringMethods() throws TemplateException {
        assertEquals("[Hello, World]", render("[{{ messages[0].content.strip() }}]", new Message("user", " \t Hello, World \u00a0\n")));
        assertEquals("Hello, World \n", eval("messages[0]['content'].lstrip()"));
        assertEquals("ell", eval("'xxellxx'.strip('x')"));
        assertEquals("True|False|True|True", eval("'abc'.startswith('ab') ~ '|' ~ 'abc'.endswith('ab') ~ '|' ~ 'abc'.endswith(['x', 'bc']) ~ '|' ~ 'abc'.startswith('b', 1)"));
        assertEquals("['a', 'b', '', 'c']", eval("'a,b,,c'.split(',')"));
        assertEquals("['a', 'b c']", eval("' a  b c '.split(none, 1)"));
        assertEquals("['a', 'b', 'c']", eval("' a\tb\n c '.split()"));
        assertEquals("['a,b', 'c']", eval("'a,b,c'.rsplit(',', 1)"));
        assertEquals("['x', 'y']", eval("'x\\r\\ny'.splitlines()"));
        assertEquals("HI|hi|Hello World|Hello world", eval("'hI'.upper() ~ '|' ~ 'Hi'.lower() ~ '|' ~ 'hello wORLD'.title() ~ '|' ~ 'hello WORLD'.capitalize()"));
        assertEquals("a-b-c|a-b,c", eval("'a,b,c'.replace(',', '-') ~ '|' ~ 'a,b,c'.replace(',', '-', 1)"));
        assertEquals("2|-1|2|a+b+c|lo", eval("'hello'.find('l') ~ '|' ~ 'hello'.find('z') ~ '|' ~ 'hello'.count('l') ~ '|' ~ '+'.join(['a', 'b', 'c']) ~ '|' ~ 'hello'.removeprefix('hel')"));
        assertEquals("e|o|ell", eval("'hello'[1] ~ '|' ~ 'hello'[-1] ~ '|' ~ 'hello'[1:4]"));
        assertEquals("True|False", eval("' \\n'.isspace() ~ '|' ~ 'a1'.isdigit()"));
    }

    /** {@code ~} writes each side as Python's str(), as Jinja2 does (expected strings from jinja2 3.1.6). */
    @Test
    void tildeConcatenatesPythonStrings() throws TemplateException {
        assertEquals("True|False", eval("true ~ '|' ~ false"));
        assertEquals("x[1, None, 'b', 1.5, True]", eval("'x' ~ [1, none, 'b', 1.5, true]"));
        assertEquals("x{'k': False}", eval("'x' ~ {'k': false}"));
        assertEquals("1e+20|0.1|2.0|3", eval("1e20 ~ '|' ~ 0.1 ~ '|' ~ 2.0 ~ '|' ~ 3"));
        assertEquals("xy", eval("'x' ~ undefined_name ~ 'y'"));
        assertEquals("2", eval("(1 ~ 2) | length"));
        assertEquals("user: True", render("{% set s = messages[0].role ~ ': ' ~ (messages | length == 1) %}{{ s }}", new Message("user", "x")));
    }

    @Test
    void pythonStringHelpersDirectly() {
        assertEquals(List.of("a", "b,c"), PyStrings.split("a,b,c", ",", 1, false));
        assertEquals(List.of("", ""), PyStrings.split(",", ",", -1, false));
        assertEquals(List.of(), PyStrings.split("   ", null, -1, false));
        assertEquals("-a-bc", PyStrings.call("abc", "replace", new Object[]{"", "-", 2L}));
        assertEquals(PyStrings.NO_METHOD, PyStrings.call("abc", "getClass", new Object[0]));
    }

    @Test
    void dictListAndLoop() throws TemplateException {
        Message m = new Message("user", "u");
        assertEquals("role=user;content=u;", render("{% for k, v in messages[0].items() %}{{ k }}={{ v }};{% endfor %}", m));
        assertEquals("role=user;content=u;", render("{% for k, v in messages[0]|items %}{{ k }}={{ v }};{% endfor %}", m));
        assertEquals("role,content|none|dflt|True|False", render("{{ messages[0].keys()|join(',') }}|{{ 'none' if messages[0].get('tool_calls') is none }}"
                + "|{{ messages[0].get('x', 'dflt') }}|{{ 'role' in messages[0] }}|{{ 'tool_calls' in messages[0] }}", m));
        assertEquals("[1, 2]", render("{% set xs = [1] %}{% do xs.append(2) %}{{ xs }}", m));
        assertEquals("found", render("{% set ns = namespace(hit=false) %}{% for m in messages %}{% set ns.hit = true %}{% endfor %}{{ 'found' if ns.hit }}", m));
        assertEquals("0:1:2:True:False:b;1:2:1:False:True:a;", render(
                "{% for m in messages %}{{ loop.index0 }}:{{ loop.index }}:{{ loop.revindex }}:{{ loop.first }}:{{ loop.last }}:{{ loop.cycle('b', 'a') }};{% endfor %}", m, m));
        assertEquals("1", render("{{ messages[1:]|length }}", m, m));
        assertEquals("<s>x</s>", render("{{ bos_token + 'x' + eos_token }}", m));
    }

    /** Expected strings are what jinja2 3.1 prints for the same templates (Python's str() of each value). */
    @Test
    void valuesPrintAsPythonsStr() throws TemplateException {
        Message m = new Message("user", "u");
        assertEquals("True|False|True", render("{{ true }}|{{ false }}|{{ 1 == 1 }}", m));
        assertEquals("[True, None, 1.0, 'a', \"it's\", 1e+20, 1e-05, {'k': False}]",
                render("{{ [true, none, 1.0, 'a', \"it's\", 1e20, 1e-5, {'k': false}] }}", m));
        assertEquals("['a\\nb', 'tab\\there', 'back\\\\slash', 'x\\x00y']", render("{{ ['a\nb', 'tab\there', 'back\\\\slash', 'x\u0000y'] }}", m));
        assertEquals("True|[1, 2]|1.5|2.0|-0.0|1234567.0|1e+16", render("{{ true|string }}|{{ [1, 2]|string }}|{{ 3 / 2 }}|{{ 4 / 2 }}|{{ -0.0 }}|{{ 1234567.0 }}|{{ 1e16 }}", m));
        assertEquals("{'role': 'user', 'content': 'u'}", render("{{ messages[0] }}", m));
        // the float filter is Python's float() (Jinjava's parsed into a Java float: 0.699999988079071), items are tuples
        assertEquals("0.7|0.1|1000.5|0.0|2|-inf|nan|1.0|0.0|5.0", render("{{ \"0.7\"|float }}|{{ 0.1|float }}|{{ \" 1_000.5 \"|float }}"
                + "|{{ \"abc\"|float }}|{{ \"abc\"|float(2) }}|{{ \"-INF\"|float }}|{{ \"nan\"|float }}|{{ true|float }}|{{ \"1.5f\"|float }}"
                + "|{{ \".5e1\"|float }}", m));
        assertEquals("True, None, 1e-05, a, [1, 'b']|a-b-c|1|False|12", render("{{ [true, none, 1e-5, \"a\", [1, \"b\"]]|join(\", \") }}"
                + "|{{ \"abc\"|join(\"-\") }}|{{ [{\"n\": 1}, {\"n\": false}]|join(\"|\", attribute=\"n\") }}|{{ [1, 2]|join }}", m));
        String sep = "x".repeat(500); // 10,000 x 500 characters: past the sandbox's 4 Mi, refused before it is built
        assertTrue(assertThrowsTemplate("{{ range(10000)|join('" + sep + "') }}").contains("characters"));
        assertTrue(assertThrowsTemplate("{% set xs = [] %}{% for i in range(10000) %}{% do xs.append('" + sep + "') %}{% endfor %}{{ xs }}")
                .contains("characters"));
        assertEquals("[('a', 1), ('b', None)]|True|1.4|[0.25]",
                render("{{ {\"a\": 1, \"b\": none}|items|list }}|{{ true|trim }}|{{ (\"0.7\"|float) * 2 }}|{{ [\"0.25\"|float]|tojson }}", m));
        // an undefined name prints nothing, as in Jinja2; so does none (Jinja2: None), which Jinjava resolves alike
        assertEquals("||", render("{{ no_such_name }}|{{ messages[0].no_such_key }}|{{ no_such_name|string }}", m));
    }

    @Test
    void tojsonIsPythonsJsonDumps() throws TemplateException {
        assertEquals("{\"name\": \"f\", \"args\": {\"x\": [1, 2.5, null, true]}, \"u\": \"é\\n\\\"\"}",
                eval("{'name': 'f', 'args': {'x': [1, 2.5, none, true]}, 'u': 'é\\n\"'}|tojson"));
        assertEquals("{\n    \"a\": [\n        1\n    ],\n    \"b\": {}\n}", eval("{'b': {}, 'a': [1]}|tojson(indent=4, sort_keys=true)"));
        assertEquals("\"\\u00e9\"", eval("'é'|tojson(ensure_ascii=true)"));
        // positional arguments in transformers' order: ensure_ascii first, then indent
        assertEquals("[\"\\u00e9\"]", eval("['é']|tojson(4)"));
        assertEquals("[\n  \"é\"\n]", eval("['é']|tojson(false, 2)"));
        assertEquals("1e-05|0.0001|1e+16|123.0|-0.5", String.join("|", PyJson.pyFloat(1e-5), PyJson.pyFloat(1e-4),
                PyJson.pyFloat(1e16), PyJson.pyFloat(123.0), PyJson.pyFloat(-0.5)));
        assertTrue(assertThrowsTemplate("{% for m in messages %}{{ loop|tojson }}{% endfor %}").contains("not JSON serializable"));
    }

    private static String assertThrowsTemplate(String source) {
        return org.junit.jupiter.api.Assertions.assertThrows(TemplateException.class,
                () -> render(source, new Message("user", "u"))).getMessage();
    }

    @Test
    void trimIsPythonStrip() throws TemplateException {
        assertEquals("[a b]", render("[{{ messages[0].content|trim }}]", new Message("user", "\u2003 a b\n\u00a0")));
    }

    @Test
    void whitespaceControlMatchesJinja2() throws TemplateException {
        Message m = new Message("user", "u");
        assertEquals("ab", render("a\n  {{- 'b' }}", m));
        assertEquals("a\n  bc", render("a\n  {{ 'b' -}}\n  c", m));
        assertEquals("ab", render("a\n{#- note #}\nb", m));
        assertEquals("  x\ny", render("{% if true %}\n  x\n{% endif %}\ny", m));
        assertEquals("XX", render("{%- for m in messages %}\n    {%- if true %}\n        {{- 'X' }}\n    {%- endif %}\n{%- endfor %}", m, m));
    }

    @Test
    void generationBlockRendersItsBody() throws TemplateException {
        assertEquals("A:u.", render("{% for m in messages %}A:{% generation %}{{ m.content }}{% endgeneration %}.{% endfor %}", new Message("user", "u")));
    }

    @Test
    void strftime() throws TemplateException {
        assertEquals("05 Mar 2024 Tuesday 09:07", TemplateFunctions.strftime(LocalDateTime.of(2024, 3, 5, 9, 7), "%d %b %Y %A %H:%M"));
        assertTrue(eval("strftime_now('%Y')").matches("\\d{4}"));
    }
}
