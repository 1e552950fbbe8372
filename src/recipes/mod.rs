//! The classic uses of an LLM as ready recipes on top of the engine.

mod classify;
mod extract;
mod task;
mod text;

pub use classify::{classify, sentiment, ClassifyOptions, LabelScore};
pub use extract::{extract, Extracted};
pub use task::{TaskOptions, TaskOutput};
pub use text::{edit, summarize, translate, SummaryLength};
