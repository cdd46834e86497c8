package dev.jsloth.tokenizer;

import java.util.Locale;
import java.util.Map;
import java.util.regex.Pattern;
import java.util.regex.PatternSyntaxException;

/**
 * Translates the regular expressions found in {@code tokenizer.json} (Oniguruma syntax, as used by
 * tokenizers) to {@link java.util.regex.Pattern}s with the same meaning.
 *
 * <p>The translation keeps Unicode semantics: {@code \s}, {@code \w}, {@code \d} and POSIX classes
 * are Unicode-aware and case-insensitive matching uses Unicode case folding (as in Oniguruma), the
 * anchors {@code ^}/{@code $} work on lines and only {@code \n} ends a line. Oniguruma-only syntax
 * is rewritten: {@code \h} (hex digit), {@code \v} (vertical tab), {@code \p{Han}} style script names,
 * {@code \p{^X}} negation, POSIX brackets {@code [[:alpha:]]}, {@code {,n}} quantifiers, literal
 * braces, {@code (?m)} (dot matches newline) and {@code (?#...)} comments.
 */
final class OnigRegex {
    private static final int FLAGS = Pattern.UNICODE_CHARACTER_CLASS | Pattern.UNICODE_CASE
            | Pattern.MULTILINE | Pattern.UNIX_LINES;

    /**
     * Oniguruma's Unicode word characters, as tokenizers 0.23's Oniguruma matches them (measured: tok-edge fixture):
     * outside a bracket class {@code \w}, {@code \W}, {@code \b} and {@code \B} take Alphabetic, marks, numbers of
     * every kind ({@code ²}, {@code ½}) and connector punctuation; inside a bracket class {@code \w}, and
     * {@code [[:word:]]}, only decimal numbers. Neither is Java's {@code \w} (which takes Join_Control, the zero-width
     * joiner), nor each other.
     */
    private static final String WORD = "\\p{IsAlphabetic}\\p{M}\\p{N}\\p{Pc}";
    private static final String WORD_IN_CLASS = "\\p{IsAlphabetic}\\p{M}\\p{Nd}\\p{Pc}";

    /** Long general-category names accepted by Oniguruma, normalized (lower case, no separators). */
    private static final Map<String, String> CATEGORIES = Map.ofEntries(
            Map.entry("letter", "L"), Map.entry("casedletter", "LC"), Map.entry("uppercaseletter", "Lu"),
            Map.entry("lowercaseletter", "Ll"), Map.entry("titlecaseletter", "Lt"),
            Map.entry("modifierletter", "Lm"), Map.entry("otherletter", "Lo"), Map.entry("mark", "M"),
            Map.entry("combiningmark", "M"), Map.entry("nonspacingmark", "Mn"),
            Map.entry("spacingmark", "Mc"), Map.entry("enclosingmark", "Me"), Map.entry("number", "N"),
            Map.entry("decimalnumber", "Nd"), Map.entry("letternumber", "Nl"),
            Map.entry("othernumber", "No"), Map.entry("punctuation", "P"),
            Map.entry("connectorpunctuation", "Pc"), Map.entry("dashpunctuation", "Pd"),
            Map.entry("openpunctuation", "Ps"), Map.entry("closepunctuation", "Pe"),
            Map.entry("initialpunctuation", "Pi"), Map.entry("finalpunctuation", "Pf"),
            Map.entry("otherpunctuation", "Po"), Map.entry("symbol", "S"), Map.entry("mathsymbol", "Sm"),
            Map.entry("currencysymbol", "Sc"), Map.entry("modifiersymbol", "Sk"),
            Map.entry("othersymbol", "So"), Map.entry("separator", "Z"), Map.entry("spaceseparator", "Zs"),
            Map.entry("lineseparator", "Zl"), Map.entry("paragraphseparator", "Zp"), Map.entry("other", "C"),
            Map.entry("control", "Cc"), Map.entry("format", "Cf"), Map.entry("surrogate", "Cs"),
            Map.entry("privateuse", "Co"), Map.entry("unassigned", "Cn"));

    /** POSIX-like property names: their Unicode-aware Java form and its negation. */
    private static final Map<String, String[]> POSIX = Map.ofEntries(
            Map.entry("alpha", new String[] {"\\p{Alpha}", "\\P{Alpha}"}),
            Map.entry("alnum", new String[] {"\\p{Alnum}", "\\P{Alnum}"}),
            Map.entry("digit", new String[] {"\\p{Digit}", "\\P{Digit}"}),
            Map.entry("upper", new String[] {"\\p{Upper}", "\\P{Upper}"}),
            Map.entry("lower", new String[] {"\\p{Lower}", "\\P{Lower}"}),
            // Oniguruma's [[:punct:]] takes symbols too (\p{S}: currency, maths, emoji)
            Map.entry("punct", new String[] {"\\p{P}\\p{S}", "[^\\p{P}\\p{S}]"}),
            Map.entry("graph", new String[] {"\\p{Graph}", "\\P{Graph}"}),
            Map.entry("print", new String[] {"\\p{Print}", "\\P{Print}"}),
            Map.entry("blank", new String[] {"\\p{Blank}", "\\P{Blank}"}),
            Map.entry("cntrl", new String[] {"\\p{Cntrl}", "\\P{Cntrl}"}),
            Map.entry("xdigit", new String[] {"\\p{XDigit}", "\\P{XDigit}"}),
            Map.entry("space", new String[] {"\\s", "\\S"}),
            Map.entry("word", new String[] {WORD_IN_CLASS, "[^" + WORD_IN_CLASS + "]"}),
            Map.entry("ascii", new String[] {"\\x{0}-\\x{7F}", "\\x{80}-\\x{10FFFF}"}),
            Map.entry("any", new String[] {"\\x{0}-\\x{10FFFF}", null}));

    private OnigRegex() {}

    /** Compiles an Oniguruma pattern; throws {@link PatternSyntaxException} when it cannot be expressed. */
    static Pattern compile(String onig) {
        return Pattern.compile(translate(onig), FLAGS);
    }

    /** The Java regex equivalent to an Oniguruma pattern. */
    static String translate(String p) {
        StringBuilder out = new StringBuilder(p.length() + 16);
        int i = 0;
        int classDepth = 0;
        while (i < p.length()) {
            char c = p.charAt(i);
            if (c == '\\') {
                i = escape(p, i, out, classDepth > 0);
                continue;
            }
            if (classDepth > 0) {
                if (c == '[') {
                    if (p.startsWith("[:", i)) {
                        int close = p.indexOf(":]", i + 2);
                        if (close > 0) {
                            String name = p.substring(i + 2, close);
                            boolean negated = name.startsWith("^");
                            out.append(posix(negated ? name.substring(1) : name, negated, p));
                            i = close + 2;
                            continue;
                        }
                    }
                    classDepth++;
                    out.append('[');
                    i = classStart(p, i + 1, out);
                    continue;
                }
                if (c == ']') {
                    classDepth--;
                }
                out.append(c);
                i++;
                continue;
            }
            switch (c) {
                case '[' -> {
                    classDepth++;
                    out.append('[');
                    i = classStart(p, i + 1, out);
                }
                case '{' -> {
                    int close = p.indexOf('}', i);
                    String body = close < 0 ? null : p.substring(i + 1, close);
                    if (body != null && body.matches("\\d+(,\\d*)?")) {
                        out.append(p, i, close + 1);
                        i = close + 1;
                    } else if (body != null && body.matches(",\\d+")) {
                        out.append("{0").append(body).append('}');
                        i = close + 1;
                    } else {
                        out.append("\\{");
                        i++;
                    }
                }
                case '}' -> {
                    out.append("\\}");
                    i++;
                }
                case '(' -> i = group(p, i, out);
                default -> {
                    out.append(c);
                    i++;
                }
            }
        }
        return out.toString();
    }

    /** Copies the start of a character class body: a leading '^' and a leading literal ']'. */
    private static int classStart(String p, int i, StringBuilder out) {
        if (i < p.length() && p.charAt(i) == '^') {
            out.append('^');
            i++;
        }
        if (i < p.length() && p.charAt(i) == ']') {
            out.append("\\]");
            i++;
        }
        return i;
    }

    /** Translates a group opening at {@code i}. */
    private static int group(String p, int i, StringBuilder out) {
        if (!p.startsWith("(?", i)) {
            out.append('(');
            return i + 1;
        }
        if (p.startsWith("(?#", i)) {
            int close = p.indexOf(')', i);
            if (close < 0) {
                throw new PatternSyntaxException("unterminated comment", p, i);
            }
            return close + 1;
        }
        // Option groups: (?imx-imx) or (?imx-imx:...). Oniguruma's 'm' is Java's 's' (dot-all).
        int j = i + 2;
        while (j < p.length() && "imx-".indexOf(p.charAt(j)) >= 0) {
            j++;
        }
        if (j > i + 2 && j < p.length() && (p.charAt(j) == ')' || p.charAt(j) == ':')) {
            out.append("(?").append(p.substring(i + 2, j).replace('m', 's'));
            return j;
        }
        out.append("(?");
        return i + 2;
    }

    /** Translates an escape sequence starting at {@code i} (the backslash). */
    private static int escape(String p, int i, StringBuilder out, boolean inClass) {
        if (i + 1 >= p.length()) {
            throw new PatternSyntaxException("trailing backslash", p, i);
        }
        char e = p.charAt(i + 1);
        switch (e) {
            case 'w' -> {
                out.append(inClass ? WORD_IN_CLASS : "[" + WORD + "]");
                return i + 2;
            }
            case 'W' -> {
                out.append("[^" + (inClass ? WORD_IN_CLASS : WORD) + "]");
                return i + 2;
            }
            case 'b', 'B' -> {
                if (inClass) { // a backspace inside a class
                    out.append("\\x08");
                    return i + 2;
                }
                String w = "[" + WORD + "]";
                out.append(e == 'b' ? "(?:(?<=" + w + ")(?!" + w + ")|(?<!" + w + ")(?=" + w + "))"
                        : "(?:(?<=" + w + ")(?=" + w + ")|(?<!" + w + ")(?!" + w + "))");
                return i + 2;
            }
            case 'h' -> {
                out.append(inClass ? "0-9a-fA-F" : "[0-9a-fA-F]");
                return i + 2;
            }
            case 'H' -> {
                out.append("[^0-9a-fA-F]");
                return i + 2;
            }
            case 'v' -> {
                out.append("\\x0B");
                return i + 2;
            }
            case 'p', 'P' -> {
                boolean negated = e == 'P';
                String name;
                int next;
                if (i + 2 < p.length() && p.charAt(i + 2) == '{') {
                    int close = p.indexOf('}', i + 3);
                    if (close < 0) {
                        throw new PatternSyntaxException("unterminated property", p, i);
                    }
                    name = p.substring(i + 3, close);
                    next = close + 1;
                } else if (i + 2 < p.length()) {
                    name = String.valueOf(p.charAt(i + 2));
                    next = i + 3;
                } else {
                    throw new PatternSyntaxException("incomplete property", p, i);
                }
                if (name.startsWith("^")) {
                    negated = !negated;
                    name = name.substring(1);
                }
                String prop = property(name, negated, p);
                boolean oneItem = prop.startsWith("[") || prop.matches("\\\\[pPsSdD](\\{[^}]*\\})?");
                out.append(inClass || oneItem ? prop : "[" + prop + "]");
                return next;
            }
            case 'K', 'O', 'y', 'Y' -> throw new PatternSyntaxException("unsupported escape \\" + e, p, i);
            default -> {
                out.append('\\').append(e);
                return i + 2;
            }
        }
    }

    /**
     * The Java form of an Oniguruma property name (general category, script, binary property,
     * POSIX name), possibly negated. Ranges come without brackets.
     */
    private static String property(String name, boolean negated, String pattern) {
        String key = name.toLowerCase(Locale.ROOT).replace("_", "").replace(" ", "").replace("-", "");
        String category = CATEGORIES.get(key);
        if (category != null) {
            return (negated ? "\\P{" : "\\p{") + category + "}";
        }
        if (key.equals("punct")) { // \p{Punct}: the Punctuation category only, unlike [[:punct:]]
            return negated ? "\\P{P}" : "\\p{P}";
        }
        if (POSIX.containsKey(key)) {
            return posix(key, negated, pattern);
        }
        for (String candidate : new String[] {name, "Is" + name, "In" + name.replaceFirst("^(?i)in_?", "")}) {
            String javaForm = "\\p{" + candidate + "}";
            try {
                Pattern.compile(javaForm, FLAGS);
                return (negated ? "\\P{" : "\\p{") + candidate + "}";
            } catch (PatternSyntaxException ignored) {
                // try the next spelling
            }
        }
        throw new PatternSyntaxException("unknown property \\p{" + name + "}", pattern, -1);
    }

    private static String posix(String name, boolean negated, String pattern) {
        String[] forms = POSIX.get(name.toLowerCase(Locale.ROOT));
        if (forms == null || forms[negated ? 1 : 0] == null) {
            throw new PatternSyntaxException("unsupported POSIX class " + name, pattern, -1);
        }
        return forms[negated ? 1 : 0];
    }
}
