package dev.jsloth.data;

import com.hubspot.jinjava.objects.SafeString;

import java.util.Map;

/** Python-style names for the kinds of values a chat template handles, for error messages that leak no Java types. */
final class TemplateValues {
    private TemplateValues() {
    }

    static String typeName(Object o) {
        return switch (o) {
            case null -> "None";
            case CharSequence cs -> "str";
            case SafeString s -> "str";
            case Boolean b -> "bool";
            case Integer i -> "int";
            case Long l -> "int";
            case java.math.BigInteger b -> "int";
            case Number n -> "float";
            case Map<?, ?> m -> "dict";
            case Iterable<?> it -> "list";
            default -> "object";
        };
    }
}
