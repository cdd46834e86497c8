package dev.jsloth.data;

import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Locale;

/**
 * The Python {@code str} methods that Hugging Face chat templates call ({@code .strip()}, {@code .startswith()},
 * {@code .split()}, ...), implemented on Java strings with Python's semantics. Jinjava has none of them, and the
 * template sandbox exposes no Java methods, so these are the only methods a template can call on a string.
 */
final class PyStrings {
    /** Returned by {@link #call} when {@code str} has no such method. */
    static final Object NO_METHOD = new Object();

    private PyStrings() {
    }

    /** Calls the Python method {@code name} on {@code s}, or returns {@link #NO_METHOD}. */
    static Object call(String s, String name, Object[] args) {
        return switch (name) {
            case "strip" -> strip(s, chars(name, args), true, true);
            case "lstrip" -> strip(s, chars(name, args), true, false);
            case "rstrip" -> strip(s, chars(name, args), false, true);
            case "startswith" -> affix(s, name, args, true);
            case "endswith" -> affix(s, name, args, false);
            case "split" -> split(s, optString(name, args, 0), maxSplit(name, args), false);
            case "rsplit" -> split(s, optString(name, args, 0), maxSplit(name, args), true);
            case "splitlines" -> splitLines(s);
            case "upper" -> s.toUpperCase(Locale.ROOT);
            case "lower" -> s.toLowerCase(Locale.ROOT);
            case "title" -> title(s);
            case "capitalize" -> s.isEmpty() ? s
                    : s.substring(0, s.offsetByCodePoints(0, 1)).toUpperCase(Locale.ROOT)
                      + s.substring(s.offsetByCodePoints(0, 1)).toLowerCase(Locale.ROOT);
            case "replace" -> replace(s, string(name, args, 0), string(name, args, 1), args.length > 2 ? toInt(args[2]) : -1);
            case "find" -> (long) s.indexOf(string(name, args, 0));
            case "rfind" -> (long) s.lastIndexOf(string(name, args, 0));
            case "index", "rindex" -> {
                int i = name.equals("index") ? s.indexOf(string(name, args, 0)) : s.lastIndexOf(string(name, args, 0));
                if (i < 0) throw new IllegalArgumentException("substring not found");
                yield (long) i;
            }
            case "count" -> count(s, string(name, args, 0));
            case "join" -> join(s, args);
            case "removeprefix" -> s.startsWith(string(name, args, 0)) ? s.substring(string(name, args, 0).length()) : s;
            case "removesuffix" -> {
                String suffix = string(name, args, 0);
                yield !suffix.isEmpty() && s.endsWith(suffix) ? s.substring(0, s.length() - suffix.length()) : s;
            }
            case "isspace" -> !s.isEmpty() && s.codePoints().allMatch(PyStrings::isWhitespace);
            case "isdigit", "isnumeric", "isdecimal" -> !s.isEmpty() && s.codePoints().allMatch(Character::isDigit);
            case "isalpha" -> !s.isEmpty() && s.codePoints().allMatch(Character::isLetter);
            case "isalnum" -> !s.isEmpty() && s.codePoints().allMatch(Character::isLetterOrDigit);
            case "isupper" -> s.codePoints().anyMatch(Character::isLetter) && s.equals(s.toUpperCase(Locale.ROOT));
            case "islower" -> s.codePoints().anyMatch(Character::isLetter) && s.equals(s.toLowerCase(Locale.ROOT));
            default -> NO_METHOD;
        };
    }

    /** Python's {@code str.isspace()} for one code point. */
    static boolean isWhitespace(int cp) {
        return Character.isWhitespace(cp) || Character.isSpaceChar(cp) || cp == 0x85;
    }

    /** Python's {@code str.strip(chars)}; {@code chars == null} strips whitespace. */
    static String strip(String s, String chars, boolean left, boolean right) {
        int start = 0;
        int end = s.length();
        if (left) {
            while (start < end) {
                int cp = s.codePointAt(start);
                if (!stripped(cp, chars)) break;
                start += Character.charCount(cp);
            }
        }
        if (right) {
            while (end > start) {
                int cp = s.codePointBefore(end);
                if (!stripped(cp, chars)) break;
                end -= Character.charCount(cp);
            }
        }
        return s.substring(start, end);
    }

    private static boolean stripped(int cp, String chars) {
        return chars == null ? isWhitespace(cp) : chars.indexOf(cp) >= 0;
    }

    private static String chars(String name, Object[] args) {
        return optString(name, args, 0);
    }

    private static boolean affix(String s, String name, Object[] args, boolean prefix) {
        if (args.length == 0) throw new IllegalArgumentException(name + "() takes at least 1 argument");
        int start = args.length > 1 ? sliceIndex(toInt(args[1]), s.length()) : 0;
        int end = args.length > 2 ? sliceIndex(toInt(args[2]), s.length()) : s.length();
        String sub = start <= end ? s.substring(start, end) : "";
        List<String> candidates = new ArrayList<>();
        if (args[0] instanceof Collection<?> c) {
            for (Object o : c) candidates.add(requireString(name, o));
        } else {
            candidates.add(requireString(name, args[0]));
        }
        for (String a : candidates) if (prefix ? sub.startsWith(a) : sub.endsWith(a)) return true;
        return false;
    }

    private static int sliceIndex(int i, int len) {
        if (i < 0) i += len;
        return Math.max(0, Math.min(len, i));
    }

    private static int maxSplit(String name, Object[] args) {
        return args.length > 1 && args[1] != null ? toInt(args[1]) : -1;
    }

    /** Python's {@code str.split(sep, maxsplit)} and {@code str.rsplit(...)}; {@code sep == null} splits on whitespace runs. */
    static List<String> split(String s, String sep, int maxSplit, boolean fromRight) {
        if (sep != null && sep.isEmpty()) throw new IllegalArgumentException("empty separator");
        List<String> parts = new ArrayList<>();
        if (sep == null) {
            List<int[]> words = new ArrayList<>();
            int i = 0;
            while (i < s.length()) {
                while (i < s.length() && isWhitespace(s.codePointAt(i))) i += Character.charCount(s.codePointAt(i));
                if (i >= s.length()) break;
                int start = i;
                while (i < s.length() && !isWhitespace(s.codePointAt(i))) i += Character.charCount(s.codePointAt(i));
                words.add(new int[]{start, i});
            }
            if (maxSplit < 0 || words.size() <= maxSplit + 1) {
                for (int[] w : words) parts.add(s.substring(w[0], w[1]));
            } else if (!fromRight) {
                for (int k = 0; k < maxSplit; k++) parts.add(s.substring(words.get(k)[0], words.get(k)[1]));
                parts.add(strip(s.substring(words.get(maxSplit)[0]), null, false, true));
            } else {
                int first = words.size() - maxSplit;
                parts.add(strip(s.substring(0, words.get(first - 1)[1]), null, true, false));
                for (int k = first; k < words.size(); k++) parts.add(s.substring(words.get(k)[0], words.get(k)[1]));
            }
            return parts;
        }
        if (!fromRight) {
            int from = 0;
            int at;
            while ((maxSplit < 0 || parts.size() < maxSplit) && (at = s.indexOf(sep, from)) >= 0) {
                parts.add(s.substring(from, at));
                from = at + sep.length();
            }
            parts.add(s.substring(from));
            return parts;
        }
        int to = s.length();
        int at;
        while ((maxSplit < 0 || parts.size() < maxSplit) && to >= sep.length() && (at = s.lastIndexOf(sep, to - sep.length())) >= 0) {
            parts.addFirst(s.substring(at + sep.length(), to));
            to = at;
        }
        parts.addFirst(s.substring(0, to));
        return parts;
    }

    private static List<String> splitLines(String s) {
        List<String> lines = new ArrayList<>();
        int start = 0;
        int i = 0;
        while (i < s.length()) {
            char c = s.charAt(i);
            if (c == '\n' || c == '\r') {
                lines.add(s.substring(start, i));
                i += c == '\r' && i + 1 < s.length() && s.charAt(i + 1) == '\n' ? 2 : 1;
                start = i;
            } else {
                i++;
            }
        }
        if (start < s.length()) lines.add(s.substring(start));
        return lines;
    }

    private static String title(String s) {
        StringBuilder out = new StringBuilder(s.length());
        boolean previousCased = false;
        for (int i = 0; i < s.length(); ) {
            int cp = s.codePointAt(i);
            out.appendCodePoint(previousCased ? Character.toLowerCase(cp) : Character.toTitleCase(cp));
            previousCased = Character.isLetter(cp);
            i += Character.charCount(cp);
        }
        return out.toString();
    }

    private static String replace(String s, String old, String replacement, int count) {
        if (count < 0) return s.replace(old, replacement);
        StringBuilder out = new StringBuilder();
        int from = 0;
        for (int n = 0; n < count; n++) {
            int at = s.indexOf(old, from);
            if (at < 0) break;
            out.append(s, from, at).append(replacement);
            from = at + old.length();
            if (old.isEmpty()) {
                if (from < s.length()) out.append(s.charAt(from));
                from++;
                if (from > s.length()) break;
            }
        }
        if (from <= s.length()) out.append(s, Math.min(from, s.length()), s.length());
        return out.toString();
    }

    private static long count(String s, String sub) {
        if (sub.isEmpty()) return s.codePointCount(0, s.length()) + 1L;
        long n = 0;
        for (int at = s.indexOf(sub); at >= 0; at = s.indexOf(sub, at + sub.length())) n++;
        return n;
    }

    private static String join(String sep, Object[] args) {
        if (args.length != 1 || !(args[0] instanceof Iterable<?> items))
            throw new IllegalArgumentException("join() takes one list of strings");
        StringBuilder out = new StringBuilder();
        boolean first = true;
        for (Object o : items) {
            if (!first) out.append(sep);
            out.append(requireString("join", o));
            first = false;
        }
        return out.toString();
    }

    private static String string(String name, Object[] args, int i) {
        if (args.length <= i) throw new IllegalArgumentException(name + "() takes at least " + (i + 1) + " argument(s)");
        return requireString(name, args[i]);
    }

    private static String optString(String name, Object[] args, int i) {
        return args.length <= i || args[i] == null ? null : requireString(name, args[i]);
    }

    private static String requireString(String name, Object o) {
        if (o instanceof CharSequence cs) return cs.toString();
        if (o instanceof com.hubspot.jinjava.objects.SafeString ss) return ss.toString();
        throw new IllegalArgumentException(name + "() expects a string argument, got " + TemplateValues.typeName(o));
    }

    static int toInt(Object o) {
        if (o instanceof Number n) return (int) Math.max(Integer.MIN_VALUE, Math.min(Integer.MAX_VALUE, n.longValue()));
        throw new IllegalArgumentException("expected an integer, got " + TemplateValues.typeName(o));
    }
}
