package dev.jsloth.data;

import com.hubspot.jinjava.interpret.JinjavaInterpreter;
import com.hubspot.jinjava.lib.filter.Filter;

import java.util.AbstractMap;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Filters that Hugging Face chat templates rely on with Python/Jinja2 semantics, registered over (or next to)
 * Jinjava's own: {@code tojson} (Python {@code json.dumps}, plain data only), {@code trim} (Python {@code str.strip})
 * and {@code items} (Jinja2 3.1's dict items).
 */
final class TemplateFilters {
    private TemplateFilters() {
    }

    static List<Filter> all() {
        return List.of(new ToJson(), new Trim(), new Items(), new Str(), new ToFloat(), new Join());
    }

    /**
     * {@code value | tojson(ensure_ascii=False, indent=None, separators=None, sort_keys=False)}: transformers' filter,
     * whose positional arguments come in that order ({@code tojson(4)} sets ensure_ascii, not the indent).
     */
    static final class ToJson implements Filter {
        @Override
        public String getName() {
            return "tojson";
        }

        @Override
        public Object filter(Object var, JinjavaInterpreter interpreter, String... args) {
            return filter(var, interpreter, (Object[]) args, Map.of());
        }

        @Override
        public Object filter(Object var, JinjavaInterpreter interpreter, Object[] args, Map<String, Object> kwargs) {
            Object indentArg = argument(args, kwargs, 1, "indent");
            String indent = switch (indentArg) {
                case null -> null;
                case Number n -> " ".repeat(Math.max(0, Math.min(64, n.intValue())));
                case CharSequence cs -> cs.toString();
                default -> throw new IllegalArgumentException("tojson: indent must be an int or a string");
            };
            String itemSep = indent == null ? ", " : ",";
            String keySep = ": ";
            if (argument(args, kwargs, 2, "separators") instanceof List<?> seps && seps.size() == 2) {
                itemSep = String.valueOf(seps.get(0));
                keySep = String.valueOf(seps.get(1));
            }
            return PyJson.dumps(var, indent, itemSep, keySep, truthy(argument(args, kwargs, 3, "sort_keys")),
                    truthy(argument(args, kwargs, 0, "ensure_ascii")));
        }

        /** The argument given by keyword, else the one at {@code position}, else null. */
        private static Object argument(Object[] args, Map<String, Object> kwargs, int position, String name) {
            return kwargs.containsKey(name) ? kwargs.get(name) : args.length > position ? args[position] : null;
        }

        private static boolean truthy(Object o) { // Python's: false, 0 and empty are false
            return switch (o) {
                case null -> false;
                case Boolean b -> b;
                case Number n -> n.doubleValue() != 0;
                case CharSequence cs -> !cs.isEmpty();
                default -> true;
            };
        }
    }

    /** {@code value | trim(chars=None)}: Python's {@code str.strip}, which also strips Unicode whitespace. */
    static final class Trim implements Filter {
        @Override
        public String getName() {
            return "trim";
        }

        @Override
        public Object filter(Object var, JinjavaInterpreter interpreter, String... args) {
            String s = PyRepr.text(var); // Jinja2's soft_str: True, not true
            return PyStrings.strip(s, args.length > 0 ? args[0] : null, true, true);
        }
    }

    /** {@code mapping | items}: the (key, value) pairs of a dict; an undefined value gives none. */
    static final class Items implements Filter {
        @Override
        public String getName() {
            return "items";
        }

        @Override
        public Object filter(Object var, JinjavaInterpreter interpreter, String... args) {
            if (var == null) return List.of();
            if (!(var instanceof Map<?, ?> m)) throw new IllegalArgumentException("items: expected a dict, got " + TemplateValues.typeName(var));
            List<Map.Entry<Object, Object>> items = new ArrayList<>(m.size());
            for (Map.Entry<?, ?> e : m.entrySet()) items.add(new AbstractMap.SimpleImmutableEntry<>(e.getKey(), e.getValue()));
            return items;
        }
    }

    /**
     * {@code value | float(default=0.0)}: Python's {@code float()} of the value, else the default (Jinja2's filter), as
     * a double. Jinjava's own filter parses into a Java float, which then printed as {@code 0.699999988079071} for
     * {@code "0.7"}. Strings are read as Python reads them: surrounding whitespace, underscores between digits,
     * {@code inf}, {@code infinity} and {@code nan} in any case; a Java-only form ({@code 1.5f}, {@code 0x1p3},
     * {@code Infinity} with its capital aside) is not a number here.
     */
    static final class ToFloat implements Filter {
        private static final java.util.regex.Pattern DECIMAL = java.util.regex.Pattern.compile(
                "[+-]?(?:\\d(?:_?\\d)*(?:\\.(?:\\d(?:_?\\d)*)?)?|\\.\\d(?:_?\\d)*)(?:[eE][+-]?\\d(?:_?\\d)*)?");
        private static final java.util.regex.Pattern SPECIAL = java.util.regex.Pattern.compile("[+-]?(?i:inf|infinity|nan)");

        @Override
        public String getName() {
            return "float";
        }

        @Override
        public Object filter(Object var, JinjavaInterpreter interpreter, String... args) {
            return filter(var, interpreter, (Object[]) args, Map.of());
        }

        /** The default ({@code float(x, 2)} or {@code default=2}) is returned as it is given, as Jinja2 returns it. */
        @Override
        public Object filter(Object var, JinjavaInterpreter interpreter, Object[] args, Map<String, Object> kwargs) {
            Double parsed = parse(var);
            if (parsed != null) return parsed;
            return kwargs.containsKey("default") ? kwargs.get("default") : args.length > 0 ? args[0] : 0.0;
        }

        /** Python's {@code float(value)}, or null where it raises. */
        static Double parse(Object value) {
            return switch (value) {
                case Boolean b -> b ? 1.0 : 0.0;
                case Number n -> PyJson.asDouble(n);
                case CharSequence cs -> {
                    String t = PyStrings.strip(cs.toString(), null, true, true);
                    if (DECIMAL.matcher(t).matches()) yield Double.parseDouble(t.replace("_", ""));
                    if (SPECIAL.matcher(t).matches()) {
                        String u = t.toLowerCase(java.util.Locale.ROOT);
                        yield u.endsWith("nan") ? Double.NaN : u.startsWith("-") ? Double.NEGATIVE_INFINITY : Double.POSITIVE_INFINITY;
                    }
                    yield null;
                }
                case null, default -> null;
            };
        }
    }

    /**
     * {@code value | join(d='', attribute=None)}: the items' Python {@code str()} ({@code True}, {@code 1e-05}, {@code
     * None}), joined by d; a string joins its characters; with {@code attribute}, each item's attribute or key. Jinjava's
     * own printed Java's forms ({@code true}, {@code 1.0E-5}).
     */
    static final class Join implements Filter {
        @Override
        public String getName() {
            return "join";
        }

        @Override
        public Object filter(Object var, JinjavaInterpreter interpreter, String... args) {
            return filter(var, interpreter, (Object[]) args, Map.of());
        }

        @Override
        public Object filter(Object var, JinjavaInterpreter interpreter, Object[] args, Map<String, Object> kwargs) {
            Object d = kwargs.containsKey("d") ? kwargs.get("d") : args.length > 0 ? args[0] : "";
            Object attribute = kwargs.containsKey("attribute") ? kwargs.get("attribute") : args.length > 1 ? args[1] : null;
            String separator = d == null ? "None" : PyRepr.str(d);
            Iterable<?> items = switch (var) {
                case null -> List.of();
                case CharSequence cs -> cs.codePoints().mapToObj(Character::toString).toList();
                case Map<?, ?> m -> m.keySet();
                case Iterable<?> it -> it;
                case Object[] a -> java.util.Arrays.asList(a);
                default -> throw new IllegalArgumentException("join: " + TemplateValues.typeName(var) + " is not iterable");
            };
            StringBuilder out = new StringBuilder();
            boolean first = true;
            for (Object item : items) {
                if (!first) out.append(separator);
                first = false;
                Object v = attribute == null ? item : item instanceof Map<?, ?> m ? m.get(attribute.toString()) : null;
                out.append(PyRepr.str(v));
                if (out.length() > JinjaSandbox.MAX_OUTPUT_CHARS) // the sandbox's bound on strings, checked as the result grows
                    throw new IllegalArgumentException("join: the result passes " + JinjaSandbox.MAX_OUTPUT_CHARS + " characters");
            }
            return out.toString();
        }
    }

    /**
     * {@code value | string}: Python's {@code str()} ({@link PyRepr#str}: {@code True}, {@code [1, None]}), in place of
     * Jinjava's, which gives Java's forms. Undefined (null here, see {@link PythonOutput}) gives the empty string.
     */
    static final class Str implements Filter {
        @Override
        public String getName() {
            return "string";
        }

        @Override
        public Object filter(Object var, JinjavaInterpreter interpreter, String... args) {
            return PyRepr.text(var);
        }
    }
}
