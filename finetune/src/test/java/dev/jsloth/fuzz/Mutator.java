package dev.jsloth.fuzz;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * Structure-aware mutations of JSON documents and byte strings, seeded: the fuzzing corpus is reproducible from
 * (parser, iteration) alone, so a failing input can always be regenerated and kept as a regression case.
 */
final class Mutator {
    static final ObjectMapper JSON = new ObjectMapper();
    private static final JsonNodeFactory F = JsonNodeFactory.instance;

    private Mutator() {
    }

    /** A value of a random kind, biased to the edge cases parsers get wrong. */
    static JsonNode randomValue(SplittableRandom r, int depth) {
        return switch (r.nextInt(16)) {
            case 0 -> F.nullNode();
            case 1 -> F.booleanNode(r.nextBoolean());
            case 2 -> F.numberNode(-1);
            case 3 -> F.numberNode(0);
            case 4 -> F.numberNode(Long.MAX_VALUE);
            case 5 -> F.numberNode(1L << 40);
            case 6 -> F.numberNode(1e308);
            case 7 -> F.numberNode(r.nextInt(1 << 20) - (1 << 19));
            case 8 -> F.numberNode(r.nextDouble() * 10 - 5);
            case 9 -> F.textNode("");
            case 10 -> F.textNode("x".repeat(r.nextInt(40)));
            case 11 -> F.textNode("\u0000\uFFFF\uD800");
            case 12 -> F.arrayNode();
            case 13 -> F.objectNode();
            case 14 -> {
                ArrayNode a = F.arrayNode();
                int n = r.nextInt(4);
                for (int i = 0; i < n && depth < 6; i++) a.add(randomValue(r, depth + 1));
                yield a;
            }
            default -> {
                ArrayNode deep = F.arrayNode(), cur = deep;
                for (int i = 0; i < 200 + r.nextInt(2000); i++) cur = cur.addArray();
                yield deep;
            }
        };
    }

    /** Applies 1-3 random edits to a copy of {@code doc}: replace, delete, duplicate-ish insert, or swap values. */
    static JsonNode mutate(JsonNode doc, SplittableRandom r) {
        JsonNode copy = doc.deepCopy();
        int edits = 1 + r.nextInt(3);
        for (int e = 0; e < edits; e++) {
            List<JsonNode> containers = new ArrayList<>();
            collect(copy, containers);
            JsonNode c = containers.get(r.nextInt(containers.size()));
            if (c instanceof ObjectNode o && !o.isEmpty()) {
                List<String> keys = new ArrayList<>();
                o.fieldNames().forEachRemaining(keys::add);
                String k = keys.get(r.nextInt(keys.size()));
                switch (r.nextInt(4)) {
                    case 0 -> o.remove(k);
                    case 1 -> o.set("x" + r.nextInt(5), randomValue(r, 0));
                    default -> o.set(k, randomValue(r, 0));
                }
            } else if (c instanceof ArrayNode a && !a.isEmpty()) {
                int i = r.nextInt(a.size());
                switch (r.nextInt(3)) {
                    case 0 -> a.remove(i);
                    case 1 -> a.insert(i, randomValue(r, 0));
                    default -> a.set(i, randomValue(r, 0));
                }
            }
        }
        return copy;
    }

    private static void collect(JsonNode n, List<JsonNode> out) {
        if (n.isContainerNode()) {
            out.add(n);
            if (out.size() > 5000) return;
            if (n.isObject()) for (Iterator<Map.Entry<String, JsonNode>> it = n.fields(); it.hasNext(); ) collect(it.next().getValue(), out);
            else for (JsonNode c : n) collect(c, out);
        }
    }

    /** Byte-level damage: flips, truncation, insertion of junk. */
    static byte[] damage(byte[] in, SplittableRandom r) {
        byte[] b = in.clone();
        switch (r.nextInt(4)) {
            case 0 -> {
                int flips = 1 + r.nextInt(8);
                for (int i = 0; i < flips && b.length > 0; i++) b[r.nextInt(b.length)] ^= (byte) (1 << r.nextInt(8));
            }
            case 1 -> b = java.util.Arrays.copyOf(b, r.nextInt(b.length + 1));
            case 2 -> {
                int at = r.nextInt(b.length + 1);
                byte[] junk = new byte[1 + r.nextInt(16)];
                r.nextBytes(junk);
                byte[] out = new byte[b.length + junk.length];
                System.arraycopy(b, 0, out, 0, at);
                System.arraycopy(junk, 0, out, at, junk.length);
                System.arraycopy(b, at, out, at + junk.length, b.length - at);
                b = out;
            }
            default -> {
                for (int i = 0; i < 1 + r.nextInt(4) && b.length > 0; i++) b[r.nextInt(b.length)] = (byte) r.nextInt(256);
            }
        }
        return b;
    }
}
