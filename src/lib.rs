//! candlelit: quantized GGUF language models in the browser (wasm32 + SIMD128) and natively.
//!
//! Bytes flow once: [`gguf::Loader`] takes the file chunk by chunk and writes each
//! tensor straight into its final storage. The forward pass lives in one place,
//! [`model::Decoder`], configured from GGUF metadata. [`engine::Session`] is step-wise
//! so that callers can stream and cancel between tokens.

pub mod backend;
pub mod constrain;
pub mod embed;
pub mod engine;
pub mod error;
pub mod gguf;
pub mod model;
pub mod recipes;
pub mod sample;
pub mod tokenizer;
#[cfg(target_arch = "wasm32")]
pub mod wasm;

pub use error::{Error, Result};
