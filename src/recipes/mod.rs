//! The classic uses of an LLM as ready recipes on top of the engine.

mod classify;
mod extract;
mod task;
mod text;

pub use classify::{classify, sentiment, ClassifyOptions, LabelScore};
pub use extract::{extract, Extracted};
pub use task::{TaskOptions, TaskOutput};
pub use text::{edit, summarize, translate, SummaryLength};

use crate::engine::Engine;
use crate::tokenizer::TemplateKwargs;

/// The template switches a recipe renders its prompts with: a reasoning model's own thinking
/// off (Qwen3's `enable_thinking`), so that a label is scored, and an answer written, right
/// after the prompt (with thinking on, the model's next token would be `<think>`). A
/// recipe's `reasoning` option asks for its thinking in words instead.
pub fn recipe_kwargs(engine: &Engine) -> TemplateKwargs {
    let mut kwargs = TemplateKwargs::new();
    if engine.template.switches().contains(&"enable_thinking") {
        kwargs.insert("enable_thinking".into(), false.into());
    }
    kwargs
}
