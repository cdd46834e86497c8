package dev.jsloth.cli;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.util.Map;

/** Prints results as one JSON line on standard output. */
final class JsonLine {
    private static final ObjectMapper MAPPER = new ObjectMapper();

    private JsonLine() {
    }

    static void print(Map<String, ?> fields) {
        try {
            System.out.println(MAPPER.writeValueAsString(fields));
            System.out.flush();
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }
}
