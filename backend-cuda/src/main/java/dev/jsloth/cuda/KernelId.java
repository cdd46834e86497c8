package dev.jsloth.cuda;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.stream.Collectors;

/**
 * The catalog of kernels: each is a {@code __global__} function template in one of the {@code .cu} resources,
 * with the number of element-type parameters it takes. The backend instantiates {@code name<T...>} with
 * {@link ElementType#cppName}s through NVRTC name expressions; {@link #instantiations()} lists every combination,
 * which is what the source test compiles with nvcc.
 */
enum KernelId {
    ADD("elementwise.cu", "add_kernel", 1),
    AXPY("elementwise.cu", "axpy_kernel", 1),
    SCALE("elementwise.cu", "scale_kernel", 1),
    DROPOUT_MASK("elementwise.cu", "dropout_mask_kernel", 1),
    FILL("elementwise.cu", "fill_kernel", 1),
    ADD_ROW_VECTOR("elementwise.cu", "add_row_vector_kernel", 1),
    ADAMW("elementwise.cu", "adamw_kernel", 1),
    CONVERT("convert.cu", "convert_kernel", 2),
    NF4_DEQUANTIZE("convert.cu", "nf4_dequantize_kernel", 1),
    LOWRANK_SPLIT("convert.cu", "lowrank_split_kernel", 1),
    LOWRANK_FOLD("convert.cu", "lowrank_fold_kernel", 1),
    COLUMN_PARTIAL_SUMS("reduce.cu", "column_partial_sums_kernel", 1),
    REDUCE_PARTIALS("reduce.cu", "reduce_partials_kernel", 1),
    SQUARE_PARTIAL_SUMS("reduce.cu", "square_partial_sums_kernel", 1),
    RMS_NORM_FORWARD("norm.cu", "rms_norm_forward_kernel", 2),
    RMS_NORM_BACKWARD("norm.cu", "rms_norm_backward_kernel", 2),
    RMS_NORM_WEIGHT_PARTIALS("norm.cu", "rms_norm_weight_partials_kernel", 1),
    ROPE("rope.cu", "rope_kernel", 1),
    SWIGLU_FORWARD("activation.cu", "swiglu_forward_kernel", 1),
    SWIGLU_BACKWARD("activation.cu", "swiglu_backward_kernel", 1),
    ATTENTION_FORWARD("attention.cu", "attention_forward_kernel", 1),
    ATTENTION_DELTA("attention.cu", "attention_delta_kernel", 1),
    ATTENTION_BACKWARD_DKDV("attention.cu", "attention_backward_dkdv_kernel", 1),
    ATTENTION_BACKWARD_DQ("attention.cu", "attention_backward_dq_kernel", 1),
    FLASH_FORWARD_D64("flash_attention.cu", "flash_attention_forward_d64_kernel", 1),
    FLASH_FORWARD_D128("flash_attention.cu", "flash_attention_forward_d128_kernel", 1),
    FLASH_FORWARD_D128_MT2("flash_attention.cu", "flash_attention_forward_d128_mt2_kernel", 1),
    FLASH_DKDV_D64("flash_attention.cu", "flash_attention_dkdv_d64_kernel", 1),
    FLASH_DKDV_D128("flash_attention.cu", "flash_attention_dkdv_d128_kernel", 1),
    FLASH_DQ_D64("flash_attention.cu", "flash_attention_dq_d64_kernel", 1),
    FLASH_DQ_D128("flash_attention.cu", "flash_attention_dq_d128_kernel", 1),
    FLASH_DQ_D128_MT2("flash_attention.cu", "flash_attention_dq_d128_mt2_kernel", 1),
    FLASH_FORWARD_D128_WGMMA("flash_attention.cu", "flash_attention_forward_d128_wgmma_kernel", 1),
    FLASH_DKDV_D128_WGMMA("flash_attention.cu", "flash_attention_dkdv_d128_wgmma_kernel", 1),
    FLASH_DQ_D128_WGMMA("flash_attention.cu", "flash_attention_dq_d128_wgmma_kernel", 1),
    FLASH_FORWARD_D64_WGMMA("flash_attention.cu", "flash_attention_forward_d64_wgmma_kernel", 1),
    FLASH_DKDV_D64_WGMMA("flash_attention.cu", "flash_attention_dkdv_d64_wgmma_kernel", 1),
    FLASH_DQ_D64_WGMMA("flash_attention.cu", "flash_attention_dq_d64_wgmma_kernel", 1),
    FLASH_CHUNK_SUM("flash_attention.cu", "flash_attention_chunk_sum_kernel", 1),
    CROSS_ENTROPY_FORWARD("cross_entropy.cu", "cross_entropy_forward_kernel", 2),
    CROSS_ENTROPY_BACKWARD("cross_entropy.cu", "cross_entropy_backward_kernel", 2),
    EMBEDDING_FORWARD("embedding.cu", "embedding_forward_kernel", 2),
    EMBEDDING_BACKWARD("embedding.cu", "embedding_backward_kernel", 2);

    /** The header every source includes. */
    static final String COMMON_HEADER = "common.cuh";

    final String file;
    final String function;
    final int typeParameters;

    KernelId(String file, String function, int typeParameters) {
        this.file = file;
        this.function = function;
        this.typeParameters = typeParameters;
    }

    /** The NVRTC name expression of one instantiation, e.g. {@code add_kernel<float>}. */
    String nameExpression(List<ElementType> types) {
        if (types.size() != typeParameters)
            throw new IllegalArgumentException(function + " takes " + typeParameters + " element types, got " + types);
        return function + "<" + types.stream().map(t -> t.cppName).collect(Collectors.joining(", ")) + ">";
    }

    /** Every element-type combination this kernel can be instantiated with. */
    List<List<ElementType>> instantiations() {
        List<List<ElementType>> out = new ArrayList<>();
        out.add(List.of());
        for (int p = 0; p < typeParameters; p++) {
            List<List<ElementType>> next = new ArrayList<>();
            for (List<ElementType> prefix : out) {
                for (ElementType t : ElementType.values()) {
                    List<ElementType> l = new ArrayList<>(prefix);
                    l.add(t);
                    next.add(List.copyOf(l));
                }
            }
            out = next;
        }
        return out;
    }

    /** The source files, each once. */
    static List<String> files() {
        return Arrays.stream(values()).map(k -> k.file).distinct().toList();
    }
}
