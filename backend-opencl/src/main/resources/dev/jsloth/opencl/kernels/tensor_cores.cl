/*
 * Inline PTX shared by the programs for NVIDIA's tensor cores (gemm_mma.cl, flash_attention.cl; built only for NVIDIA
 * GPUs of compute capability 8.0+, whose OpenCL compiler takes inline assembly: tools/gpu/opencl-ptx-probe).
 */

/* Four 8x8 matrices of 16-bit values from local memory in one instruction: lane L gives the address (32-bit, local) of
 * row L % 8 of matrix L / 8 and receives in register i elements (L / 4, 2 (L % 4)) and (L / 4, 2 (L % 4) + 1) of matrix
 * i, or with the transposing form elements (2 (L % 4), L / 4) and (2 (L % 4) + 1, L / 4): the mma operand fragments.
 * Every row address must be 16-byte aligned. */
inline void tc_ldmatrix(uint *r, uint address) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(address));
}

inline void tc_ldmatrix_trans(uint *r, uint address) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(address));
}
