//! Translation, summaries and edits: instructions the small models follow, and where the
//! request has a shape (n bullet points, at most n words) a constraint that guarantees it.

use super::task::{run, Task, TaskOptions, TaskOutput};
use crate::backend::Backend;
use crate::constrain::Constraint;
use crate::engine::{run_now, Engine};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

pub async fn translate_async<B: Backend>(
    engine: &mut Engine<B>,
    text: &str,
    from: Option<&str>,
    to: &str,
    opts: &TaskOptions,
) -> Result<TaskOutput> {
    if to.trim().is_empty() {
        return Err(Error::InvalidRequest("translate needs a target language".into()));
    }
    let instruction = match from {
        Some(f) if !f.trim().is_empty() => format!(
            "Translate the user's text from {} into {}. Reply with the translation only.",
            f.trim(),
            to.trim()
        ),
        _ => format!(
            "Translate the user's text into {}. Reply with the translation only.",
            to.trim()
        ),
    };
    run(
        engine,
        Task {
            instruction,
            input: text,
            constraint: None,
        },
        opts,
    )
    .await
}

/// How long a summary may be.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SummaryLength {
    /// At most this many words (enforced).
    MaxWords(usize),
    /// Exactly this many bullet points, one per line, each starting with "- " (enforced).
    Points(usize),
}

pub async fn summarize_async<B: Backend>(
    engine: &mut Engine<B>,
    text: &str,
    length: SummaryLength,
    opts: &TaskOptions,
) -> Result<TaskOutput> {
    let (instruction, pattern) = match length {
        SummaryLength::MaxWords(n) if (1..=500).contains(&n) => (
            format!("Summarize the user's text in at most {n} words. Reply with the summary only."),
            // Words are runs of non-space characters; at most n of them, single spaces between.
            format!(r"[^\s]+( [^\s]+){{0,{}}}", n - 1),
        ),
        SummaryLength::Points(n) if (1..=20).contains(&n) => (
            format!(
                "Summarize the user's text as {n} short bullet points, one per line, each starting with \"- \". Reply with the bullet points only."
            ),
            format!(r"(- [^\n]+\n){{{}}}- [^\n]+", n - 1),
        ),
        _ => {
            return Err(Error::InvalidRequest(
                "summary length: 1 to 500 words, or 1 to 20 points".into(),
            ))
        }
    };
    run(
        engine,
        Task {
            instruction,
            input: text,
            constraint: Some(Constraint::Regex { pattern }),
        },
        opts,
    )
    .await
}

/// Applies an editing instruction ("fix the spelling", "make it shorter", "more formal").
pub async fn edit_async<B: Backend>(
    engine: &mut Engine<B>,
    text: &str,
    instruction: &str,
    opts: &TaskOptions,
) -> Result<TaskOutput> {
    if instruction.trim().is_empty() {
        return Err(Error::InvalidRequest("edit needs an instruction".into()));
    }
    run(
        engine,
        Task {
            instruction: format!(
                "Rewrite the user's text following this instruction: {}. Reply with the rewritten text only.",
                instruction.trim()
            ),
            input: text,
            constraint: None,
        },
        opts,
    )
    .await
}

pub fn translate<B: Backend>(
    engine: &mut Engine<B>,
    text: &str,
    from: Option<&str>,
    to: &str,
    opts: &TaskOptions,
) -> Result<TaskOutput> {
    run_now(translate_async(engine, text, from, to, opts))
}

pub fn summarize<B: Backend>(
    engine: &mut Engine<B>,
    text: &str,
    length: SummaryLength,
    opts: &TaskOptions,
) -> Result<TaskOutput> {
    run_now(summarize_async(engine, text, length, opts))
}

pub fn edit<B: Backend>(
    engine: &mut Engine<B>,
    text: &str,
    instruction: &str,
    opts: &TaskOptions,
) -> Result<TaskOutput> {
    run_now(edit_async(engine, text, instruction, opts))
}
