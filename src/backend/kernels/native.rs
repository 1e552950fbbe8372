//! The kernels a native x86-64 build runs: AVX2 for the 32-value block types where the CPU
//! has it (see `avx2`), the scalar references for the rest (natively candle's AVX kernels
//! take Q8_0 and the k-quants; see `preferred`).

pub use super::avx2::{dot_q4_0, dot_q4_1, dot_q5_0, dot_q5_1};
pub use super::scalar::{dot_bf16, dot_f16, dot_q2_k, dot_q3_k, dot_q4_k, dot_q5_k, dot_q6_k, dot_q8_0};
