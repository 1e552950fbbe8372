//! The classic uses of an LLM as ready recipes on top of the engine.

mod classify;
mod extract;
mod task;
mod text;

pub use classify::{classify, classify_async, sentiment, sentiment_async, ClassifyOptions, LabelScore};
pub use extract::{extract, extract_async, Extracted};
pub use task::{TaskOptions, TaskOutput};
pub use text::{edit, edit_async, summarize, summarize_async, translate, translate_async, SummaryLength};

use crate::backend::Backend;
use crate::engine::Engine;
use crate::tokenizer::TemplateKwargs;

/// The template switches a recipe renders its prompts with: a reasoning model's own thinking
/// off (Qwen3's `enable_thinking`), so that a label is scored, and an answer written, right
/// after the prompt (with thinking on, the model's next token would be `<think>`). A
/// recipe's `reasoning` option asks for its thinking in words instead.
pub fn recipe_kwargs<B: Backend>(engine: &Engine<B>) -> TemplateKwargs {
    let mut kwargs = TemplateKwargs::new();
    if engine.template.switches().contains(&"enable_thinking") {
        kwargs.insert("enable_thinking".into(), false.into());
    }
    kwargs
}
