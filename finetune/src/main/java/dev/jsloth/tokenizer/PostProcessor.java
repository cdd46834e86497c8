package dev.jsloth.tokenizer;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Post-processors: they add the special tokens around an encoded sequence (for instance Llama's
 * BOS) when special tokens are requested. Supported types: {@code TemplateProcessing},
 * {@code ByteLevel} (nothing to do on ids), {@code BertProcessing}, {@code RobertaProcessing} and
 * {@code Sequence} of those.
 */
interface PostProcessor {
    /** The ids of a single sequence once processed. */
    int[] process(int[] ids, boolean addSpecialTokens);

    /** Parses the {@code post_processor} field; null (or absent) means none. */
    static PostProcessor parse(Json json) throws TokenizerFormatException {
        if (json.isNull()) {
            return null;
        }
        String type = json.type();
        return switch (type) {
            case "TemplateProcessing" -> Template.parse(json);
            case "ByteLevel" -> {
                json.bool("trim_offsets", true);
                yield (ids, add) -> ids;
            }
            case "BertProcessing", "RobertaProcessing" -> {
                int cls = idOfPair(json.require("cls"));
                int sep = idOfPair(json.require("sep"));
                yield (ids, add) -> {
                    if (!add) {
                        return ids;
                    }
                    int[] out = new int[ids.length + 2];
                    out[0] = cls;
                    System.arraycopy(ids, 0, out, 1, ids.length);
                    out[out.length - 1] = sep;
                    return out;
                };
            }
            case "Sequence" -> {
                List<PostProcessor> steps = new ArrayList<>();
                for (Json step : json.require("processors").elements()) {
                    PostProcessor p = parse(step);
                    if (p == null) {
                        throw step.error("expected a post-processor object, found null");
                    }
                    steps.add(p);
                }
                yield (ids, add) -> {
                    for (PostProcessor p : steps) {
                        ids = p.process(ids, add);
                    }
                    return ids;
                };
            }
            default -> throw json.get("type").error("unsupported post-processor type \"" + type + "\"");
        };
    }

    private static int idOfPair(Json pair) throws TokenizerFormatException {
        List<Json> parts = pair.elements();
        if (parts.size() != 2) {
            throw pair.error("expected [token, id]");
        }
        parts.get(0).asString();
        return parts.get(1).asNonNegativeInt();
    }

    /**
     * {@code TemplateProcessing} for a single sequence: the {@code single} template, where
     * {@code $A} is the sequence and special tokens expand to their {@code ids}.
     *
     * @param pieces for each template item, null for the sequence or the ids of a special token
     */
    record Template(List<int[]> pieces) implements PostProcessor {
        static Template parse(Json json) throws TokenizerFormatException {
            Map<String, int[]> specials = new HashMap<>();
            Json specialJson = json.get("special_tokens");
            if (!specialJson.isNull()) {
                for (Map.Entry<String, Json> e : specialJson.fields()) {
                    Json entry = e.getValue();
                    List<Json> idList = entry.require("ids").elements();
                    int[] ids = new int[idList.size()];
                    for (int i = 0; i < ids.length; i++) {
                        ids[i] = idList.get(i).asNonNegativeInt();
                    }
                    specials.put(entry.optString("id", e.getKey()), ids);
                }
            }
            List<int[]> pieces = new ArrayList<>();
            for (Json item : templateItems(json.require("single"))) {
                if (item.isString()) {
                    pieces.add(stringPiece(item, specials));
                } else if (item.has("Sequence")) {
                    String id = item.require("Sequence").string("id");
                    if (!id.equals("A")) {
                        throw item.error("the single template can only use sequence A, found " + id);
                    }
                    pieces.add(null);
                } else if (item.has("SpecialToken")) {
                    Json special = item.require("SpecialToken");
                    pieces.add(specialIds(special.require("id"), specials));
                } else {
                    throw item.error("expected {\"Sequence\": ...} or {\"SpecialToken\": ...}");
                }
            }
            for (Json item : json.has("pair") ? templateItems(json.require("pair")) : List.<Json>of()) {
                if (item.has("SpecialToken")) {
                    specialIds(item.require("SpecialToken").require("id"), specials);
                }
            }
            return new Template(java.util.Collections.unmodifiableList(pieces));
        }

        /** Templates are arrays of items, or (in hand-written files) a string like "[CLS] $A [SEP]". */
        private static List<Json> templateItems(Json template) throws TokenizerFormatException {
            if (template.isString()) {
                throw template.error("string templates are not supported here; expected an array of items");
            }
            return template.elements();
        }

        private static int[] stringPiece(Json item, Map<String, int[]> specials) throws TokenizerFormatException {
            String s = item.asString();
            String name = s.contains(":") ? s.substring(0, s.lastIndexOf(':')) : s;
            if (name.equals("$") || name.equals("$A") || name.equals("$0")) {
                return null;
            }
            if (name.startsWith("$")) {
                throw item.error("the single template can only use sequence A, found " + name);
            }
            int[] ids = specials.get(name);
            if (ids == null) {
                throw item.error("special token \"" + name + "\" is missing from special_tokens");
            }
            return ids;
        }

        private static int[] specialIds(Json id, Map<String, int[]> specials) throws TokenizerFormatException {
            int[] ids = specials.get(id.asString());
            if (ids == null) {
                throw id.error("special token \"" + id.asString() + "\" is missing from special_tokens");
            }
            return ids;
        }

        @Override
        public int[] process(int[] ids, boolean addSpecialTokens) {
            int total = 0;
            for (int[] p : pieces) {
                total += p == null ? ids.length : addSpecialTokens ? p.length : 0;
            }
            int[] out = new int[total];
            int k = 0;
            for (int[] p : pieces) {
                int[] src = p == null ? ids : addSpecialTokens ? p : null;
                if (src != null) {
                    System.arraycopy(src, 0, out, k, src.length);
                    k += src.length;
                }
            }
            return out;
        }
    }
}
