package dev.jsloth.io;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.jsloth.api.quant.DynamicMap;
import dev.jsloth.api.quant.Nf4;
import dev.jsloth.api.quant.Nf4Scales;
import dev.jsloth.api.quant.Nf4Weight;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;

/**
 * The bitsandbytes 4-bit layout of one linear weight in a safetensors checkpoint, as transformers saves it:
 * {@code W.weight} (U8 {@code [numel/2, 1]}, packed codes), {@code W.weight.absmax} (F32 per 64-block, or U8
 * under double quantization), {@code W.weight.quant_map} (the 16 NF4 values), {@code W.weight.nested_absmax} and
 * {@code W.weight.nested_quant_map} (double quantization), and {@code W.weight.quant_state.bitsandbytes__nf4}
 * (U8 bytes of a JSON object: quant_type, blocksize, dtype, shape, nested_blocksize, nested_offset, ...).
 */
public final class BnbNf4 {
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    public static final String STATE_SUFFIX = ".quant_state.bitsandbytes__nf4";

    private BnbNf4() {
    }

    /** Whether the checkpoint stores {@code weightName} (e.g. {@code model.layers.0.mlp.up_proj.weight}) in 4-bit form. */
    public static boolean isQuantized(SafeTensorsCheckpoint ck, String weightName) throws CheckpointFormatException {
        if (ck.contains(weightName + FP4_STATE_SUFFIX))
            throw new CheckpointFormatException(ck.file(weightName + FP4_STATE_SUFFIX).path(), "tensor '" + weightName + "'",
                    "is a bitsandbytes FP4 weight: only NF4 (bnb_4bit_quant_type=\"nf4\") is supported");
        return ck.contains(weightName + STATE_SUFFIX);
    }

    /** bitsandbytes' FP4 weights: recognised, so that they are refused by name rather than read as U8. */
    private static final String FP4_STATE_SUFFIX = ".quant_state.bitsandbytes__fp4";
    /** The largest quant-state JSON read (bitsandbytes writes ~200 bytes). */
    private static final long MAX_STATE_BYTES = 64 << 10;

    /** A weight read back: its logical shape, packed codes and block scales (as stored: plain or double-quantized). */
    public record Loaded(int[] shape, MemorySegment packed, Nf4Scales scales, String dtype) {
    }

    /** Reads and validates one 4-bit weight; {@code expectedShape} is what the config says it must be. */
    public static Loaded read(SafeTensorsCheckpoint ck, String w, int[] expectedShape) throws IOException {
        SafeTensorsFile f = ck.file(w + STATE_SUFFIX);
        Path file = f.path();
        String stateName = w + STATE_SUFFIX;
        TensorEntry stateEntry = ck.entry(stateName);
        if (!stateEntry.dtype().equals("U8") || stateEntry.byteLength() > MAX_STATE_BYTES)
            throw new CheckpointFormatException(file, "tensor '" + stateName + "'", "must be U8 JSON of at most " + MAX_STATE_BYTES + " bytes, is " + stateEntry);
        byte[] jsonBytes = ck.bytes(stateName).toArray(ValueLayout.JAVA_BYTE);
        JsonNode st;
        try {
            st = Json.MAPPER.readTree(new String(jsonBytes, StandardCharsets.UTF_8));
        } catch (IOException e) {
            throw new CheckpointFormatException(file, "tensor '" + stateName + "'", "is not a JSON quant state");
        }
        if (st == null || !st.isObject()) throw new CheckpointFormatException(file, "tensor '" + stateName + "'", "is not a JSON object");
        if (!"nf4".equals(st.path("quant_type").asText()))
            throw new CheckpointFormatException(file, stateName + ".quant_type", "'" + st.path("quant_type").asText() + "' is not supported (only nf4)");
        if (!st.path("blocksize").isInt() || st.path("blocksize").asInt() != Nf4.BLOCK) // exactly the integer 64: not "64", 64.9 or 2^32 + 64
            throw new CheckpointFormatException(file, stateName + ".blocksize", st.path("blocksize") + " is not supported (only 64)");
        JsonNode shapeNode = st.get("shape");
        if (shapeNode == null || !shapeNode.isArray() || shapeNode.size() != 2)
            throw new CheckpointFormatException(file, stateName + ".shape", "missing or not [out, in]");
        if (!shapeNode.get(0).isInt() || !shapeNode.get(1).isInt())
            throw new CheckpointFormatException(file, stateName + ".shape", shapeNode + " is not two integers");
        int[] shape = {shapeNode.get(0).asInt(), shapeNode.get(1).asInt()};
        if (!java.util.Arrays.equals(shape, expectedShape))
            throw new CheckpointFormatException(file, stateName + ".shape", java.util.Arrays.toString(shape) + " does not match the config's " + java.util.Arrays.toString(expectedShape));
        long numel = (long) shape[0] * shape[1];
        int blocks = Nf4.blocks(numel);
        TensorEntry packed = ck.entry(w);
        if (!packed.dtype().equals("U8") || packed.byteLength() != numel / 2)
            throw new CheckpointFormatException(file, "tensor '" + w + "'", "must be U8 with " + numel / 2 + " bytes, is " + packed);
        float[] quantMap = floats(ck, w + ".quant_map", 16);
        for (int i = 0; i < 16; i++)
            if (quantMap[i] != Nf4.CODE[i]) throw new CheckpointFormatException(file, "tensor '" + w + ".quant_map'", "is not the NF4 code table");
        TensorEntry absmax = ck.entry(w + ".absmax");
        Nf4Scales scales;
        if (absmax.dtype().equals("F32")) {
            scales = Nf4Scales.plain(scales(ck, w + ".absmax", blocks));
        } else if (absmax.dtype().equals("U8")) {
            if (absmax.byteLength() != blocks) throw new CheckpointFormatException(file, "tensor '" + w + ".absmax'", "must hold " + blocks + " codes");
            int nested = (blocks + Nf4.NESTED_BLOCK - 1) / Nf4.NESTED_BLOCK;
            if (!st.path("nested_blocksize").isInt() || st.path("nested_blocksize").asInt() != Nf4.NESTED_BLOCK)
                throw new CheckpointFormatException(file, stateName + ".nested_blocksize", "must be 256, is " + st.path("nested_blocksize"));
            JsonNode off = st.get("nested_offset");
            if (off == null || !off.isNumber() || !Float.isFinite((float) off.asDouble()))
                throw new CheckpointFormatException(file, stateName + ".nested_offset", "missing or not a finite number: " + off);
            float[] nestedAbsmax = scales(ck, w + ".nested_absmax", nested);
            float[] map8 = floats(ck, w + ".nested_quant_map", 256);
            for (float v : map8)
                if (!Float.isFinite(v)) throw new CheckpointFormatException(file, "tensor '" + w + ".nested_quant_map'", "holds " + v);
            scales = Nf4Scales.doubleQuantized(ck.bytes(w + ".absmax").toArray(ValueLayout.JAVA_BYTE), map8, nestedAbsmax, (float) off.asDouble());
        } else {
            throw new CheckpointFormatException(file, "tensor '" + w + ".absmax'", "dtype " + absmax.dtype() + " is not F32 or U8");
        }
        return new Loaded(shape, ck.bytes(w), scales, st.path("dtype").asText("float32"));
    }

    /** Block scales (absolute maxima): finite and not negative. */
    private static float[] scales(SafeTensorsCheckpoint ck, String name, int expected) throws IOException {
        float[] v = floats(ck, name, expected);
        for (int i = 0; i < v.length; i++)
            if (!(v[i] >= 0) || Float.isInfinite(v[i]))
                throw new CheckpointFormatException(ck.file(name).path(), "tensor '" + name + "'", "block " + i + " has scale " + v[i]
                        + " (an absolute maximum: finite, not negative)");
        return v;
    }

    private static float[] floats(SafeTensorsCheckpoint ck, String name, int expected) throws IOException {
        TensorEntry e = ck.entry(name);
        if (!e.dtype().equals("F32") || e.numel() != expected)
            throw new CheckpointFormatException(ck.file(name).path(), "tensor '" + name + "'", "must be F32 with " + expected + " values, is " + e);
        return ck.bytes(name).toArray(F32);
    }

    /** Adds the bitsandbytes tensors of one quantized weight to a writer. */
    public static void write(SafeTensorsWriter out, String w, int[] shape, Nf4Weight q, String originalDtype, Arena arena) throws IOException {
        out.add(w, "U8", new long[]{q.packed().length, 1}, arena.allocateFrom(ValueLayout.JAVA_BYTE, q.packed()));
        out.add(w + ".quant_map", "F32", new long[]{16}, f32(Nf4.CODE, arena));
        ObjectNode st = Json.MAPPER.createObjectNode();
        st.put("quant_type", "nf4");
        st.put("blocksize", Nf4.BLOCK);
        st.put("dtype", originalDtype);
        st.putArray("shape").add(shape[0]).add(shape[1]);
        if (q.doubleQuant()) {
            out.add(w + ".absmax", "U8", new long[]{q.absmaxCodes().length}, arena.allocateFrom(ValueLayout.JAVA_BYTE, q.absmaxCodes()));
            out.add(w + ".nested_absmax", "F32", new long[]{q.nestedAbsmax().length}, f32(q.nestedAbsmax(), arena));
            out.add(w + ".nested_quant_map", "F32", new long[]{256}, f32(DynamicMap.SIGNED, arena));
            st.put("nested_blocksize", Nf4.NESTED_BLOCK);
            st.put("nested_dtype", "float32");
            st.put("nested_offset", (double) q.offset());
        } else {
            out.add(w + ".absmax", "F32", new long[]{q.absmax().length}, f32(q.absmax(), arena));
        }
        byte[] json = new com.fasterxml.jackson.databind.ObjectMapper().writeValueAsBytes(st);
        out.add(w + STATE_SUFFIX, "U8", new long[]{json.length}, arena.allocateFrom(ValueLayout.JAVA_BYTE, json));
    }

    private static MemorySegment f32(float[] v, Arena arena) {
        MemorySegment s = arena.allocate(4L * v.length);
        for (int i = 0; i < v.length; i++) s.setAtIndex(F32, i, v[i]);
        return s;
    }

    /** transformers' {@code quantization_config} for bitsandbytes NF4. */
    public static ObjectNode quantizationConfig(boolean doubleQuant, String computeDtype) {
        ObjectNode q = Json.MAPPER.createObjectNode();
        q.put("quant_method", "bitsandbytes");
        q.put("_load_in_4bit", true);
        q.put("_load_in_8bit", false);
        q.put("load_in_4bit", true);
        q.put("load_in_8bit", false);
        q.put("bnb_4bit_quant_type", "nf4");
        q.put("bnb_4bit_use_double_quant", doubleQuant);
        q.put("bnb_4bit_compute_dtype", computeDtype);
        q.put("bnb_4bit_quant_storage", "uint8");
        q.put("llm_int8_enable_fp32_cpu_offload", false);
        q.put("llm_int8_has_fp16_weight", false);
        q.putNull("llm_int8_skip_modules");
        q.put("llm_int8_threshold", 6.0);
        return q;
    }
}
