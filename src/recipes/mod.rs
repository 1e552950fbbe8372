//! The classic uses of an LLM as ready recipes on top of the engine.

mod classify;

pub use classify::{classify, sentiment, ClassifyOptions, LabelScore};
