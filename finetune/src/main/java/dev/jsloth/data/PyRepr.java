package dev.jsloth.data;

import com.hubspot.jinjava.objects.SafeString;

import java.math.BigInteger;
import java.util.Iterator;
import java.util.Map;

/**
 * Python's {@code str()} and {@code repr()} of the plain values a chat template handles, for what Jinja2 prints:
 * {@code {{ true }}} is {@code True}, a list prints as {@code [True, None, 'a']}, a float as {@code 1e-05}. Jinjava
 * prints Java's forms ({@code true}, {@code [true, null, 'a']}, {@code 1.0E-5}); {@link JinjaSandbox} routes every
 * printed expression and the {@code string} filter through {@link #str}.
 */
final class PyRepr {
    private PyRepr() {
    }

    /** {@code str(value)}; null (Python's None) is "None". */
    static String str(Object value) {
        return switch (value) {
            case null -> "None";
            case CharSequence cs -> cs.toString();
            case SafeString s -> s.toString();
            default -> repr(value);
        };
    }

    /**
     * A template value as Jinja2 writes it out (printed, joined with {@code ~}, or through {@code string} / {@code trim}):
     * {@link #str}, and null as nothing. Jinjava resolves an undefined name to null, and Jinja2 writes an undefined
     * value as the empty string (an explicit {@code none}, written {@code None} by Jinja2, cannot be told apart from it).
     */
    static String text(Object value) {
        return value == null ? "" : str(value);
    }

    /** {@code repr(value)}: strings quoted and escaped as Python does, containers with their items' repr. */
    static String repr(Object value) {
        StringBuilder out = new StringBuilder();
        repr(value, out, 0);
        return out.toString();
    }

    /** Nesting past this depth prints as {@code [...]}, as Python prints a list that contains itself. */
    private static final int MAX_DEPTH = 64;

    private static void repr(Object value, StringBuilder out, int depth) {
        if (out.length() > JinjaSandbox.MAX_OUTPUT_CHARS) // a container of long strings: the sandbox's bound, as it grows
            throw new IllegalArgumentException("a value printed past " + JinjaSandbox.MAX_OUTPUT_CHARS + " characters");
        switch (value) {
            case null -> out.append("None");
            case Boolean b -> out.append(b ? "True" : "False");
            case Integer _, Long _, Short _, Byte _, BigInteger _ -> out.append(value); // Python's int: its digits
            case Number n -> out.append(floatRepr(PyJson.asDouble(n)));                  // float, double, BigDecimal
            case CharSequence cs -> quote(cs.toString(), out);
            case SafeString s -> quote(s.toString(), out);
            case Map<?, ?> m -> {
                if (depth >= MAX_DEPTH) {
                    out.append("{...}");
                    return;
                }
                out.append('{');
                boolean first = true;
                for (Map.Entry<?, ?> e : m.entrySet()) {
                    if (!first) out.append(", ");
                    first = false;
                    repr(e.getKey(), out, depth + 1);
                    out.append(": ");
                    repr(e.getValue(), out, depth + 1);
                }
                out.append('}');
            }
            case Map.Entry<?, ?> e -> { // a dict's items() pair: a tuple
                out.append('(');
                repr(e.getKey(), out, depth + 1);
                out.append(", ");
                repr(e.getValue(), out, depth + 1);
                out.append(')');
            }
            case Iterable<?> it -> {
                if (depth >= MAX_DEPTH) {
                    out.append("[...]");
                    return;
                }
                out.append('[');
                for (Iterator<?> i = it.iterator(); i.hasNext(); ) {
                    repr(i.next(), out, depth + 1);
                    if (i.hasNext()) out.append(", ");
                }
                out.append(']');
            }
            default -> out.append(value);
        }
    }

    /** {@code repr(float)}: as JSON's ({@link PyJson#pyFloat}) but nan, inf and -inf. */
    static String floatRepr(double d) {
        if (Double.isNaN(d)) return "nan";
        if (Double.isInfinite(d)) return d > 0 ? "inf" : "-inf";
        return PyJson.pyFloat(d);
    }

    /**
     * A string's repr: single quotes unless it holds a single quote and no double quote; backslash, the quote, {@code \t
     * \n \r} escaped, and the other characters that Python's {@code str.isprintable} rejects (controls, format
     * characters, separators other than the space, surrogates, unassigned and private-use code points) as
     * {@code \xhh}, {@code \\uhhhh} or {@code \Uhhhhhhhh}.
     */
    static void quote(String s, StringBuilder out) {
        char q = s.indexOf('\'') >= 0 && s.indexOf('"') < 0 ? '"' : '\'';
        out.append(q);
        for (int i = 0; i < s.length(); ) {
            int cp = s.codePointAt(i);
            i += Character.charCount(cp);
            switch (cp) {
                case '\\' -> out.append("\\\\");
                case '\t' -> out.append("\\t");
                case '\n' -> out.append("\\n");
                case '\r' -> out.append("\\r");
                default -> {
                    if (cp == q) out.append('\\').append(q);
                    else if (printable(cp)) out.appendCodePoint(cp);
                    else if (cp < 0x100) out.append(String.format("\\x%02x", cp));
                    else if (cp < 0x10000) out.append(String.format("\\u%04x", cp));
                    else out.append(String.format("\\U%08x", cp));
                }
            }
        }
        out.append(q);
    }

    private static boolean printable(int cp) {
        if (cp == ' ') return true;
        return switch (Character.getType(cp)) {
            case Character.CONTROL, Character.FORMAT, Character.SURROGATE, Character.PRIVATE_USE, Character.UNASSIGNED,
                 Character.LINE_SEPARATOR, Character.PARAGRAPH_SEPARATOR, Character.SPACE_SEPARATOR -> false;
            default -> true;
        };
    }
}
