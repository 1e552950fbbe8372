//! The shared runner behind the text recipes: an instruction, optional few-shot turns,
//! a persona, optional step-by-step reasoning before the answer, an optional constraint
//! on the answer, and the answer's probability under the model.

use crate::backend::Backend;
use crate::constrain::Constraint;
use crate::engine::{Engine, FinishReason, Prompt, Request, Step, Truncation};
use crate::error::Result;
use crate::sample::SamplingParams;
use crate::tokenizer::Message;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskOptions {
    /// Answer as this role ("a patient French teacher"); becomes the system prompt's opening.
    pub persona: Option<String>,
    /// Think step by step first (returned as `reasoning`), then answer on its own.
    pub reasoning: bool,
    /// Few-shot examples `(input, output)`, shown as earlier turns.
    pub examples: Vec<(String, String)>,
    /// Most tokens of the answer (the reasoning gets as many again).
    pub max_tokens: usize,
    /// Greedy unless given.
    pub sampling: Option<SamplingParams>,
}

impl Default for TaskOptions {
    fn default() -> Self {
        TaskOptions {
            persona: None,
            reasoning: false,
            examples: Vec::new(),
            max_tokens: 256,
            sampling: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskOutput {
    pub text: String,
    /// The model's thinking before the answer, when `reasoning` was asked for.
    pub reasoning: Option<String>,
    /// Probability of the answer's tokens under the model, exp(Σ log p): how sure the
    /// model is of this exact answer (the constraint does not inflate it).
    pub confidence: f32,
    /// Mean log-probability per answer token (comparable across answer lengths).
    pub mean_logprob: f32,
    pub finish_reason: FinishReason,
    pub tokens: usize,
}

/// What a recipe asks of the runner.
pub(crate) struct Task<'a> {
    pub instruction: String,
    pub input: &'a str,
    pub constraint: Option<Constraint>,
}

const THINK: &str = "Think it through step by step before giving the answer.";
const NOW_ANSWER: &str = "Now give the final answer only, with no explanation.";

pub(crate) async fn run<B: Backend>(engine: &mut Engine<B>, task: Task<'_>, opts: &TaskOptions) -> Result<TaskOutput> {
    let system = match &opts.persona {
        Some(p) if !p.trim().is_empty() => format!("You are {}. {}", p.trim(), task.instruction),
        _ => task.instruction.clone(),
    };
    let chat = engine.template.has_template();
    let mut turns: Vec<(String, String)> = opts.examples.clone();
    let mut reasoning = None;
    let mut input = task.input.to_string();
    if opts.reasoning {
        let thinking = format!("{input}\n\n{THINK}");
        let out = generate(engine, &prompt(chat, &system, &turns, &thinking), None, opts).await?;
        turns.push((thinking, out.text.trim().to_string()));
        reasoning = Some(out.text.trim().to_string());
        input = NOW_ANSWER.to_string();
    }
    let mut out = generate(engine, &prompt(chat, &system, &turns, &input), task.constraint, opts).await?;
    out.reasoning = reasoning;
    if out.finish_reason != FinishReason::Length {
        out.text = out.text.trim().to_string();
    }
    Ok(out)
}

/// The conversation in the model's chat template, or a plain Input/Output pattern for
/// models without one.
fn prompt(chat: bool, system: &str, turns: &[(String, String)], input: &str) -> Prompt {
    if chat {
        let mut msgs = vec![Message::new("system", system)];
        for (i, o) in turns {
            msgs.push(Message::new("user", i));
            msgs.push(Message::new("assistant", o));
        }
        msgs.push(Message::new("user", input));
        Prompt::Chat(msgs)
    } else {
        let mut p = format!("{system}\n\n");
        for (i, o) in turns {
            p += &format!("Input: {i}\nOutput: {o}\n\n");
        }
        p += &format!("Input: {input}\nOutput:");
        Prompt::Text(p)
    }
}

async fn generate<B: Backend>(
    engine: &mut Engine<B>,
    prompt: &Prompt,
    constraint: Option<Constraint>,
    opts: &TaskOptions,
) -> Result<TaskOutput> {
    let req = Request {
        sampling: opts.sampling.clone().unwrap_or_else(SamplingParams::greedy),
        max_tokens: opts.max_tokens,
        // A base model writing the Input/Output pattern would go on to invent the next input.
        stop: if engine.template.has_template() || constraint.is_some() {
            vec![]
        } else {
            vec!["\nInput:".into(), "\n\n\n".into()]
        },
        ignore_eos: false,
        constraint,
        // A task's input is never shortened behind the caller's back.
        truncation: Truncation::Disabled,
        chat_template_kwargs: super::recipe_kwargs(engine),
        ..Request::default()
    };
    engine.start(prompt, &req)?;
    let mut text = String::new();
    let mut logprob = 0.0f32;
    let mut tokens = 0usize;
    loop {
        engine.checkpoint().await?;
        match engine.step_async().await? {
            Step::Prefill { .. } => {}
            Step::Token {
                text: t, logprob: lp, ..
            } => {
                text += &t;
                logprob += lp;
                tokens += 1;
            }
            Step::Done { reason, text: t, .. } => {
                text += &t;
                return Ok(TaskOutput {
                    text,
                    reasoning: None,
                    confidence: logprob.exp(),
                    mean_logprob: if tokens > 0 { logprob / tokens as f32 } else { 0.0 },
                    finish_reason: reason,
                    tokens,
                });
            }
        }
    }
}
