package dev.jsloth.data;

import com.hubspot.jinjava.objects.SafeString;

import java.math.BigDecimal;
import java.math.BigInteger;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Python's {@code json.dumps} output for plain data (dicts, lists, strings, numbers, booleans, None), as Hugging Face's
 * {@code tojson} template filter produces it ({@code ensure_ascii=False} by default). Any other kind of value is
 * refused rather than serialized by reflection.
 */
final class PyJson {
    private PyJson() {
    }

    /**
     * @param indent     null for one line; otherwise the string put once per nesting level
     * @param itemSep    separator between items ({@code ", "} on one line, {@code ","} when indented, in Python)
     * @param keySep     separator between a key and its value ({@code ": "})
     * @param sortKeys   sort dict keys
     * @param ensureAscii escape every non-ASCII character as {@code \\uXXXX}
     */
    static String dumps(Object value, String indent, String itemSep, String keySep, boolean sortKeys, boolean ensureAscii) {
        StringBuilder out = new StringBuilder();
        new Writer(out, indent, itemSep, keySep, sortKeys, ensureAscii).write(value, 0);
        return out.toString();
    }

    private record Writer(StringBuilder out, String indent, String itemSep, String keySep, boolean sortKeys, boolean ensureAscii) {
        void write(Object v, int depth) {
            if (depth > 100) throw new IllegalArgumentException("tojson: value nested deeper than 100 levels");
            switch (v) {
                case null -> out.append("null");
                case Boolean b -> out.append(b ? "true" : "false");
                case Integer i -> out.append(i);
                case Long l -> out.append(l);
                case Short s -> out.append(s);
                case Byte b -> out.append(b);
                case BigInteger b -> out.append(b);
                case Number n -> out.append(pyFloat(asDouble(n)));
                case CharSequence cs -> string(cs.toString());
                case SafeString s -> string(s.toString());
                case Map<?, ?> m -> dict(m, depth);
                case Map.Entry<?, ?> e -> list(List.of(nullSafe(e.getKey()), nullSafe(e.getValue())), depth);
                case Iterable<?> it -> list(it, depth);
                case Object[] a -> list(java.util.Arrays.asList(a), depth);
                default -> throw new IllegalArgumentException("tojson: object of type " + TemplateValues.typeName(v) + " is not JSON serializable");
            }
        }

        private static Object nullSafe(Object o) {
            return o == null ? NULL : o;
        }

        private static final Object NULL = new Object();

        private void dict(Map<?, ?> m, int depth) {
            List<Map.Entry<String, Object>> entries = new ArrayList<>(m.size());
            for (Map.Entry<?, ?> e : m.entrySet()) entries.add(Map.entry(key(e.getKey()), e.getValue() == null ? NULL : e.getValue()));
            if (sortKeys) entries.sort(Map.Entry.comparingByKey());
            if (entries.isEmpty()) {
                out.append("{}");
                return;
            }
            out.append('{');
            boolean first = true;
            for (Map.Entry<String, Object> e : entries) {
                if (!first) out.append(itemSep);
                newline(depth + 1);
                string(e.getKey());
                out.append(keySep);
                write(e.getValue() == NULL ? null : e.getValue(), depth + 1);
                first = false;
            }
            newline(depth);
            out.append('}');
        }

        private void list(Iterable<?> items, int depth) {
            if (!items.iterator().hasNext()) {
                out.append("[]");
                return;
            }
            out.append('[');
            boolean first = true;
            for (Object o : items) {
                if (!first) out.append(itemSep);
                newline(depth + 1);
                write(o == NULL ? null : o, depth + 1);
                first = false;
            }
            newline(depth);
            out.append(']');
        }

        private void newline(int depth) {
            if (indent == null) return;
            out.append('\n');
            out.append(indent.repeat(depth));
        }

        private static String key(Object k) {
            return switch (k) {
                case null -> "null";
                case Boolean b -> b ? "true" : "false";
                case CharSequence cs -> cs.toString();
                case SafeString s -> s.toString();
                case Integer i -> i.toString();
                case Long l -> l.toString();
                case Number n -> pyFloat(n.doubleValue());
                default -> throw new IllegalArgumentException("tojson: keys must be str, int, float, bool or None, not " + TemplateValues.typeName(k));
            };
        }

        private void string(String s) {
            out.append('"');
            for (int i = 0; i < s.length(); i++) {
                char c = s.charAt(i);
                switch (c) {
                    case '"' -> out.append("\\\"");
                    case '\\' -> out.append("\\\\");
                    case '\n' -> out.append("\\n");
                    case '\r' -> out.append("\\r");
                    case '\t' -> out.append("\\t");
                    case '\b' -> out.append("\\b");
                    case '\f' -> out.append("\\f");
                    default -> {
                        if (c < 0x20 || (ensureAscii && c > 0x7f)) out.append(String.format("\\u%04x", (int) c));
                        else out.append(c);
                    }
                }
            }
            out.append('"');
        }
    }

    /**
     * A floating value as Python holds it (a double): a Java float by its shortest decimal (0.7f as 0.7, not
     * 0.699999988079071, as Java floats that reach a template print widened), any other number as it widens.
     */
    static double asDouble(Number n) {
        return n instanceof Float f ? Double.parseDouble(Float.toString(f)) : n.doubleValue();
    }

    /** Python's {@code repr(float)}: shortest round-trip digits, scientific below 1e-4 and from 1e16. */
    static String pyFloat(double d) {
        if (Double.isNaN(d)) return "NaN";
        if (Double.isInfinite(d)) return d > 0 ? "Infinity" : "-Infinity";
        if (d == 0) return (1 / d < 0) ? "-0.0" : "0.0";
        BigDecimal bd = new BigDecimal(Double.toString(Math.abs(d))).stripTrailingZeros();
        String digits = bd.unscaledValue().toString();
        int exponent = digits.length() - bd.scale() - 1;
        String sign = d < 0 ? "-" : "";
        if (exponent >= -4 && exponent < 16) {
            String plain = bd.toPlainString();
            return sign + (plain.contains(".") ? plain : plain + ".0");
        }
        String mantissa = digits.length() == 1 ? digits : digits.charAt(0) + "." + digits.substring(1);
        return sign + mantissa + "e" + (exponent < 0 ? "-" : "+") + (Math.abs(exponent) < 10 ? "0" : "") + Math.abs(exponent);
    }
}
