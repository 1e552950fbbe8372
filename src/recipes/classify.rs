//! Classification with label probabilities from the model's own token probabilities,
//! normalised over the labels, with contextual calibration (Zhao et al., 2021: divide by
//! the probabilities the model gives a content-free input, then renormalise).

use crate::backend::Backend;
use crate::engine::{run_now, Engine, Prompt};
use crate::error::{Error, Result};
use crate::tokenizer::Message;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ClassifyOptions {
    /// What to decide; a default naming the labels is used when empty.
    pub instruction: Option<String>,
    /// Few-shot examples `(text, label)`, shown as earlier turns of the conversation
    /// (or as a plain pattern for models without a chat template).
    pub examples: Vec<(String, String)>,
    /// Apply contextual calibration.
    pub calibrate: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelScore {
    pub label: String,
    /// Normalised over the labels (calibrated if asked).
    pub probability: f32,
    /// The model's log-probability of the label's tokens (uncalibrated, not normalised).
    pub logprob: f32,
}

/// The text that stands for "no content" when estimating the model's label prior.
const CONTENT_FREE: &str = "N/A";

/// Scores every label as the continuation of the classification prompt for `text` and
/// returns them in the order given, with probabilities that sum to one.
pub fn classify<B: Backend>(
    engine: &mut Engine<B>,
    text: &str,
    labels: &[String],
    opts: &ClassifyOptions,
) -> Result<Vec<LabelScore>> {
    run_now(classify_async(engine, text, labels, opts))
}

/// [`classify`] for callers that must not block (the browser's GPU).
pub async fn classify_async<B: Backend>(
    engine: &mut Engine<B>,
    text: &str,
    labels: &[String],
    opts: &ClassifyOptions,
) -> Result<Vec<LabelScore>> {
    if labels.len() < 2 {
        return Err(Error::InvalidRequest("classify needs at least two labels".into()));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = labels.iter().find(|l| !seen.insert(l.as_str())) {
        return Err(Error::InvalidRequest(format!("label `{dup}` is given twice")));
    }
    let chat = engine.template.has_template();
    let logprobs = label_logprobs(engine, text, labels, opts, chat).await?;
    let mut probs = normalise(&logprobs);
    if opts.calibrate {
        let prior = normalise(&label_logprobs(engine, CONTENT_FREE, labels, opts, chat).await?);
        for (p, q) in probs.iter_mut().zip(&prior) {
            *p /= q.max(1e-12);
        }
        let total: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
    }
    Ok(labels
        .iter()
        .zip(probs)
        .zip(logprobs)
        .map(|((label, probability), logprob)| LabelScore {
            label: label.clone(),
            probability,
            logprob,
        })
        .collect())
}

/// Positive / Negative / Neutral, with one example of each: small models answer
/// zero-shot sentiment questions poorly (SmolLM2-135M calls a scathing review "Positive").
pub fn sentiment<B: Backend>(engine: &mut Engine<B>, text: &str, calibrate: bool) -> Result<Vec<LabelScore>> {
    run_now(sentiment_async(engine, text, calibrate))
}

/// [`sentiment`] for callers that must not block (the browser's GPU).
pub async fn sentiment_async<B: Backend>(
    engine: &mut Engine<B>,
    text: &str,
    calibrate: bool,
) -> Result<Vec<LabelScore>> {
    let labels = ["Positive", "Negative", "Neutral"].map(String::from);
    let example = |t: &str, l: &str| (t.to_string(), l.to_string());
    let opts = ClassifyOptions {
        instruction: Some(
            "What is the sentiment of the text? Answer with one word: Positive, Negative or Neutral.".into(),
        ),
        examples: vec![
            example("The hotel staff were friendly and the room was spotless.", "Positive"),
            example("The package arrived broken and support never answered.", "Negative"),
            example("The meeting is scheduled for Tuesday at 10 am.", "Neutral"),
        ],
        calibrate,
    };
    classify_async(engine, text, &labels, &opts).await
}

async fn label_logprobs<B: Backend>(
    engine: &mut Engine<B>,
    text: &str,
    labels: &[String],
    opts: &ClassifyOptions,
    chat: bool,
) -> Result<Vec<f32>> {
    // Labels are listed in a fixed (sorted) order so the answer does not depend on the
    // order the caller passed them in.
    let mut sorted: Vec<&str> = labels.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    let instruction = opts.instruction.clone().unwrap_or_else(|| {
        format!(
            "Classify the text. Answer with exactly one of these labels: {}.",
            sorted.join(", ")
        )
    });
    let (prompt, continuations) = if chat {
        let mut msgs = vec![Message::new("system", &instruction)];
        for (ex, label) in &opts.examples {
            msgs.push(Message::new("user", ex));
            msgs.push(Message::new("assistant", label));
        }
        msgs.push(Message::new("user", text));
        (Prompt::Chat(msgs), labels.to_vec())
    } else {
        let mut p = format!("{instruction}\n\n");
        for (ex, label) in &opts.examples {
            p += &format!("Text: {ex}\nLabel: {label}\n\n");
        }
        p += &format!("Text: {text}\nLabel:");
        (Prompt::Text(p), labels.iter().map(|l| format!(" {l}")).collect())
    };
    let kwargs = super::recipe_kwargs(engine);
    Ok(engine
        .score_async(&prompt, &continuations, &kwargs)
        .await?
        .into_iter()
        .map(|s| s.logprob)
        .collect())
}

fn normalise(logprobs: &[f32]) -> Vec<f32> {
    let max = logprobs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logprobs.iter().map(|l| (l - max).exp()).collect();
    let total: f32 = exps.iter().sum();
    exps.iter().map(|e| e / total).collect()
}
