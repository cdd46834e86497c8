package dev.jsloth.data;

import com.hubspot.jinjava.lib.fn.ELFunctionDefinition;

import java.lang.reflect.Method;
import java.time.LocalDateTime;
import java.time.format.TextStyle;
import java.util.List;
import java.util.Locale;

/**
 * The global functions Hugging Face gives chat templates: {@code raise_exception(message)} and
 * {@code strftime_now(format)}.
 */
final class TemplateFunctions {
    private TemplateFunctions() {
    }

    static List<ELFunctionDefinition> all() {
        return List.of(define("raise_exception", "raiseException"), define("strftime_now", "strftimeNow"));
    }

    private static ELFunctionDefinition define(String name, String method) {
        try {
            Method m = TemplateFunctions.class.getDeclaredMethod(method, Object.class);
            m.setAccessible(true);
            return new ELFunctionDefinition("", name, m);
        } catch (NoSuchMethodException e) {
            throw new AssertionError(e);
        }
    }

    /** Aborts the render; the chat template's caller gets a {@link TemplateException} with this message. */
    static String raiseException(Object message) {
        RenderGuard.raise(String.valueOf(message));
        return "";
    }

    /** The current local time formatted with a Python {@code strftime} format. */
    static String strftimeNow(Object format) {
        return strftime(LocalDateTime.now(), String.valueOf(format));
    }

    static String strftime(LocalDateTime t, String format) {
        StringBuilder out = new StringBuilder();
        for (int i = 0; i < format.length(); i++) {
            char c = format.charAt(i);
            if (c != '%' || i + 1 == format.length()) {
                out.append(c);
                continue;
            }
            char d = format.charAt(++i);
            switch (d) {
                case 'd' -> out.append(String.format("%02d", t.getDayOfMonth()));
                case 'm' -> out.append(String.format("%02d", t.getMonthValue()));
                case 'Y' -> out.append(t.getYear());
                case 'y' -> out.append(String.format("%02d", t.getYear() % 100));
                case 'H' -> out.append(String.format("%02d", t.getHour()));
                case 'I' -> out.append(String.format("%02d", (t.getHour() + 11) % 12 + 1));
                case 'M' -> out.append(String.format("%02d", t.getMinute()));
                case 'S' -> out.append(String.format("%02d", t.getSecond()));
                case 'p' -> out.append(t.getHour() < 12 ? "AM" : "PM");
                case 'j' -> out.append(String.format("%03d", t.getDayOfYear()));
                case 'b' -> out.append(t.getMonth().getDisplayName(TextStyle.SHORT, Locale.ENGLISH));
                case 'B' -> out.append(t.getMonth().getDisplayName(TextStyle.FULL, Locale.ENGLISH));
                case 'a' -> out.append(t.getDayOfWeek().getDisplayName(TextStyle.SHORT, Locale.ENGLISH));
                case 'A' -> out.append(t.getDayOfWeek().getDisplayName(TextStyle.FULL, Locale.ENGLISH));
                case '%' -> out.append('%');
                default -> out.append('%').append(d);
            }
        }
        return out.toString();
    }
}
