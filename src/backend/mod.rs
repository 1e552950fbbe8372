//! The operations the decoder is written against. Today one CPU implementation
//! (candle's quantized kernels for the matrix products, plain loops for the rest);
//! a faster kernel or a GPU backend replaces an operation here, never the model code.

pub mod cpu;
pub mod kernels;
