package dev.jsloth.data;

import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Checks that a template only names filters and tests the engine has. Jinja2 refuses unknown ones when it compiles a
 * template, but Jinjava silently renders nothing for them, which would corrupt training text without a word.
 */
final class TemplateNames {
    private static final Pattern FILTER = Pattern.compile("(?<![|])\\|\\s*([A-Za-z_]\\w*)");
    private static final Pattern TEST = Pattern.compile("\\bis\\s+(?:not\\s+)?([A-Za-z_]\\w*)");

    private TemplateNames() {
    }

    /** @throws TemplateException naming every unknown filter and test used in {@code source} */
    static void check(String source, Set<String> filters, Set<String> tests) throws TemplateException {
        String code = code(source);
        Set<String> unknown = new TreeSet<>();
        Matcher f = FILTER.matcher(code);
        while (f.find()) if (!filters.contains(f.group(1))) unknown.add("filter '" + f.group(1) + "'");
        Matcher t = TEST.matcher(code);
        while (t.find()) if (!tests.contains(t.group(1))) unknown.add("test '" + t.group(1) + "'");
        if (!unknown.isEmpty()) throw new TemplateException("chat template uses unsupported " + String.join(", ", unknown));
    }

    /**
     * The code inside {@code {{ }}} and {@code {% %}} of {@code source}, with string literals blanked and each region
     * separated by a newline; text, comments and raw blocks are left out.
     */
    static String code(String source) {
        StringBuilder code = new StringBuilder();
        int i = 0;
        int n = source.length();
        while (i < n) {
            int open = source.indexOf('{', i);
            if (open < 0 || open + 1 >= n) break;
            char kind = source.charAt(open + 1);
            if (kind == '#') {
                int end = source.indexOf("#}", open + 2);
                i = end < 0 ? n : end + 2;
                continue;
            }
            if (kind != '{' && kind != '%') {
                i = open + 1;
                continue;
            }
            String close = kind == '{' ? "}}" : "%}";
            StringBuilder region = new StringBuilder();
            int j = open + 2;
            while (j < n && !source.startsWith(close, j)) {
                char c = source.charAt(j);
                if (c == '\'' || c == '"') {
                    int k = j + 1;
                    while (k < n && source.charAt(k) != c) k += source.charAt(k) == '\\' ? 2 : 1;
                    region.append(c).append(c);
                    j = Math.min(n, k + 1);
                } else {
                    region.append(c);
                    j++;
                }
            }
            i = Math.min(n, j + 2);
            String r = region.toString();
            if (kind == '%' && r.replaceAll("[-+\\s]", "").equals("raw")) {
                Matcher end = Pattern.compile("\\{%[-+]?\\s*endraw\\s*[-+]?%}").matcher(source);
                i = end.find(i) ? end.end() : n;
                continue;
            }
            code.append(r).append('\n');
        }
        return code.toString();
    }
}
