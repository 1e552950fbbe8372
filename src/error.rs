//! One error type for the whole crate; the wasm bindings turn it into a JS `Error`.

use thiserror::Error;

/// Everything that can go wrong, grouped by the class of problem so that callers
/// (and tests) can tell a truncated download from an unsupported model.
#[derive(Debug, Error)]
pub enum Error {
    #[error("not a GGUF file: bad magic {0:02x?} (expected \"GGUF\")")]
    BadMagic([u8; 4]),
    #[error("unsupported GGUF version {0} (supported: 2, 3)")]
    UnsupportedVersion(u32),
    #[error("truncated GGUF: {0}")]
    Truncated(String),
    #[error("implausible GGUF header: {what} = {count} exceeds the limit of {limit}")]
    AbsurdCount { what: &'static str, count: u64, limit: u64 },
    #[error("malformed GGUF: {0}")]
    Malformed(String),
    #[error("tensor `{name}` has unknown block type {type_id}")]
    UnknownBlockType { name: String, type_id: u32 },
    #[error("tensor `{name}` lies outside the file: bytes {start}..{end} of a {file_len}-byte file")]
    TensorOutOfBounds {
        name: String,
        start: u64,
        end: u64,
        file_len: u64,
    },
    #[error("split GGUF: {0}")]
    Split(String),
    #[error("unsupported model architecture `{0}` (supported: llama, granite, qwen2, qwen3, gemma2, gemma3, phi3)")]
    UnsupportedArchitecture(String),
    #[error("model metadata: {0}")]
    Metadata(String),
    #[error("missing tensor `{0}`")]
    MissingTensor(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("chat template: {0}")]
    Template(String),
    #[error("context overflow: {needed} tokens needed but the context holds {limit}")]
    ContextOverflow { needed: usize, limit: usize },
    #[error("out of memory while allocating {0} bytes")]
    OutOfMemory(usize),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("embedding model: {0}")]
    Embedding(String),
    #[error("constraint: {0}")]
    Constraint(String),
    #[error("GPU: {0}")]
    Gpu(String),
    /// The caller cancelled the request (between two steps).
    #[error("the request was cancelled")]
    Cancelled,
    #[error("tensor backend: {0}")]
    Backend(#[from] candle_core::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// A stable name for the class of problem (used as the JS error's `name`).
    pub fn code(&self) -> &'static str {
        match self {
            Error::BadMagic(_) => "BadMagic",
            Error::UnsupportedVersion(_) => "UnsupportedVersion",
            Error::Truncated(_) => "Truncated",
            Error::AbsurdCount { .. } => "AbsurdCount",
            Error::Malformed(_) => "Malformed",
            Error::UnknownBlockType { .. } => "UnknownBlockType",
            Error::TensorOutOfBounds { .. } => "TensorOutOfBounds",
            Error::Split(_) => "Split",
            Error::UnsupportedArchitecture(_) => "UnsupportedArchitecture",
            Error::Metadata(_) => "Metadata",
            Error::MissingTensor(_) => "MissingTensor",
            Error::Tokenizer(_) => "Tokenizer",
            Error::Template(_) => "Template",
            Error::ContextOverflow { .. } => "ContextOverflow",
            Error::OutOfMemory(_) => "OutOfMemory",
            Error::InvalidRequest(_) => "InvalidRequest",
            Error::Embedding(_) => "Embedding",
            Error::Constraint(_) => "Constraint",
            Error::Gpu(_) => "Gpu",
            // The DOM's name for a cancelled operation, as `fetch` and the model load use it.
            Error::Cancelled => "AbortError",
            Error::Backend(_) => "Backend",
            Error::Io(_) => "Io",
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
