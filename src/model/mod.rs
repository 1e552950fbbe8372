//! Decoder models: configuration from GGUF metadata, the forward pass and the KV cache.

pub mod config;
mod decoder;
mod kv_cache;

pub use config::{Activation, Config, SUPPORTED};
pub use decoder::{Decoder, DEFAULT_CONTEXT};
pub use kv_cache::KvCache;
