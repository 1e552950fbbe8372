//! Sessions over a loaded model: a request is started, then driven one step at a time
//! (a prefill chunk or one token per call), so callers can stream and cancel between
//! any two steps. The KV cache stays across requests and the longest common token
//! prefix is reused.

pub mod clock;
mod fit;
mod ready;
pub mod reasoning;
mod score;
mod stop;

pub use fit::Truncation;
pub use ready::{run_now, Pause};
pub use score::Scored;
pub use stop::{StopMatcher, StopResult};

use crate::backend::{cpu::Cpu, Backend};
use crate::constrain::{Constraint, GrammarIndex, Guide};
use crate::error::{Error, Result};
use crate::gguf::Gguf;
use crate::model::{Decoder, KvCache, DEFAULT_CONTEXT};
use crate::sample::{Sampled, Sampler, SamplingParams};
use crate::tokenizer::{ChatTemplate, Message, TemplateKwargs, Tokenizer, Utf8Stream};
use reasoning::{Parts, ReasoningSplit};
use serde::{Deserialize, Serialize};

/// What the model continues from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prompt {
    /// Raw text; BOS is added when the model's metadata asks for it, special-token texts are parsed.
    Text(String),
    /// A conversation rendered with the model's chat template (generation prompt added).
    Chat(Vec<Message>),
    Tokens(Vec<u32>),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Request {
    pub sampling: SamplingParams,
    pub max_tokens: usize,
    pub stop: Vec<String>,
    /// Keep going past end-of-generation tokens (benchmarks that need exactly `max_tokens`).
    pub ignore_eos: bool,
    /// Output must match this (JSON Schema, regex, choices, grammar); the reply ends as
    /// soon as the output is complete and nothing else may follow.
    pub constraint: Option<Constraint>,
    /// A chat too long for the context: an error, or its oldest turns left out.
    pub truncation: Truncation,
    /// Extra variables for a chat's template, as transformers' `apply_chat_template` takes
    /// them: Qwen3's and DeepSeek's `enable_thinking`, gpt-oss's `reasoning_effort`.
    pub chat_template_kwargs: TemplateKwargs,
    /// A chat reply's `<think>…</think>` comes apart from the answer (the steps' `reasoning`)
    /// unless this is off; raw-text prompts are never split.
    pub separate_reasoning: bool,
}

impl Default for Request {
    fn default() -> Self {
        Request {
            sampling: SamplingParams::default(),
            max_tokens: 512,
            stop: Vec::new(),
            ignore_eos: false,
            constraint: None,
            truncation: Truncation::Disabled,
            chat_template_kwargs: TemplateKwargs::new(),
            separate_reasoning: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end-of-generation token or a stop string.
    Stop,
    /// `max_tokens` reached.
    Length,
    /// The context window is full.
    ContextFull,
    Cancelled,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub prompt_tokens: usize,
    /// Prompt tokens whose keys and values were already in the cache.
    pub cached_tokens: usize,
    /// Prompt tokens that had to be run.
    pub prefill_tokens: usize,
    pub generated_tokens: usize,
    /// Oldest messages left out of the prompt to fit the context (`Truncation::Auto`).
    pub dropped_messages: usize,
    pub prefill_ms: f64,
    pub decode_ms: f64,
    pub prefill_tokens_per_s: f64,
    pub decode_tokens_per_s: f64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Step {
    /// Part of the prompt was run.
    Prefill { done: usize, total: usize },
    /// A token was generated; `text` is what may be shown now (may be empty while a
    /// multi-byte character or a possible stop string is incomplete).
    Token {
        id: u32,
        text: String,
        /// Thinking that may be shown now (a chat reply's `<think>` part).
        #[serde(skip_serializing_if = "String::is_empty")]
        reasoning: String,
        logprob: f32,
        top_logprobs: Vec<(u32, f32)>,
    },
    Done {
        reason: FinishReason,
        text: String,
        #[serde(skip_serializing_if = "String::is_empty")]
        reasoning: String,
        stats: Stats,
    },
}

struct Active {
    sampler: Sampler,
    prompt: Vec<u32>,
    /// Prompt tokens still to run.
    prefill_from: usize,
    max_tokens: usize,
    ignore_eos: bool,
    generated: Vec<u32>,
    /// Logits for the next token, once the prompt has been run.
    logits: Option<Vec<f32>>,
    utf8: Utf8Stream,
    stops: StopMatcher,
    /// Takes a chat reply's thinking apart from its answer.
    reasoning: Option<ReasoningSplit>,
    guide: Option<Guide>,
    stats: Stats,
    /// A forward pass recorded by the last step whose logits have not been delivered yet.
    pending: Option<Pending>,
}

impl Active {
    fn split(&mut self, text: &str) -> Parts {
        match self.reasoning.as_mut() {
            Some(r) => r.push(text),
            None => Parts {
                reasoning: String::new(),
                text: text.to_string(),
            },
        }
    }
}

struct Pending {
    since: f64,
    prefill: bool,
    /// Whether the logits are what the next token is drawn from (not a middle prefill chunk).
    keep: bool,
    /// Cache length before the pass, to roll back to if it fails.
    pos_before: usize,
}

pub struct Engine<B: Backend = Cpu> {
    pub model: Decoder<B>,
    pub tokenizer: Tokenizer,
    pub template: ChatTemplate,
    cache: KvCache<B>,
    context_size: usize,
    /// Prompt tokens run per step: large enough for fast batched products,
    /// small enough that a cancel is seen within a fraction of a second.
    pub prefill_chunk: usize,
    active: Option<Active>,
    /// Built on the first constrained request (indexing a large vocabulary takes a moment).
    grammar: Option<GrammarIndex>,
    /// Messages the last truncated chat left out: the cut the KV cache holds.
    last_dropped: usize,
    pause: Option<Pause>,
}

impl Engine<Cpu> {
    /// `context_size` caps the KV cache (default: the model's trained context, at most 4096).
    pub fn new(gguf: Gguf, context_size: Option<usize>) -> Result<Self> {
        Self::with_backend(gguf, context_size, Cpu)
    }
}

impl<B: Backend> Engine<B> {
    /// An engine whose model runs on `backend`.
    pub fn with_backend(mut gguf: Gguf, context_size: Option<usize>, backend: B) -> Result<Self> {
        // The model first: an unsupported architecture is the clearest error to give.
        let mut model = Decoder::load(&mut gguf, backend)?;
        let tokenizer = Tokenizer::from_gguf(&gguf.metadata)?;
        let template = tokenizer.chat_template(&gguf.metadata)?;
        let context_size = context_size
            .unwrap_or(DEFAULT_CONTEXT)
            .min(model.cfg.context_length)
            .max(1);
        model.fit_context(context_size);
        let cache = model.new_cache();
        Ok(Engine {
            model,
            tokenizer,
            template,
            cache,
            context_size,
            prefill_chunk: 128,
            active: None,
            grammar: None,
            last_dropped: 0,
            pause: None,
        })
    }

    pub fn context_size(&self) -> usize {
        self.context_size
    }

    pub fn cache(&self) -> &KvCache<B> {
        &self.cache
    }

    /// A 32-token prefill and one decode step on throwaway tokens, then a clean cache: in the
    /// browser a module starts in the baseline compiler and its hot functions are optimised
    /// once they have run a while, so without this the first reply ran at two thirds of the
    /// speed of the next (Gemma 3's first 145-token prefill took 374 ms, later ones 240 ms).
    /// Both kernel paths (several rows and one) run here, while the page still loads (about
    /// 0.1 s on Gemma 3); an 8-token warm-up left later loads' prefill 10% slower at 2 threads.
    pub fn warm_up(&mut self) -> Result<()> {
        self.reset();
        let tokens = [0u32; 32];
        let logits = self.model.forward(&tokens, &mut self.cache, false);
        let step = logits.and_then(|_| self.model.forward(&tokens[..1], &mut self.cache, false));
        self.reset();
        step.map(|_| ())
    }

    /// Uses this chat template instead of the file's (a missing or broken one, or a newer
    /// revision); an error leaves the file's in place. The cache is kept: a prompt that
    /// renders differently shares less of it.
    pub fn set_chat_template(&mut self, source: &str) -> Result<()> {
        self.template = self.tokenizer.chat_template_from(Some(source))?;
        Ok(())
    }

    /// What scoring and the recipes await between two steps (see [`Pause`]); none by default.
    pub fn set_pause(&mut self, pause: Option<Pause>) {
        self.pause = pause;
    }

    /// The cancellation point of awaited work: ends the running request (the cache keeps
    /// what was computed) and fails with [`Error::Cancelled`] when the pause says to stop.
    pub async fn checkpoint(&mut self) -> Result<()> {
        let stop = match &self.pause {
            Some(pause) => pause().await,
            None => false,
        };
        if stop {
            self.active = None;
            return Err(Error::Cancelled);
        }
        Ok(())
    }

    /// Forgets the conversation held in the cache.
    pub fn reset(&mut self) {
        self.active = None;
        self.cache.clear(&self.model.backend);
    }

    pub fn tokenize_prompt(&self, prompt: &Prompt) -> Result<Vec<u32>> {
        self.tokenize_prompt_with(prompt, &TemplateKwargs::new())
    }

    pub(crate) fn tokenize_prompt_with(&self, prompt: &Prompt, kwargs: &TemplateKwargs) -> Result<Vec<u32>> {
        match prompt {
            Prompt::Text(t) => self.tokenizer.encode(t, true, true),
            Prompt::Chat(messages) => self.tokenize_chat(messages, kwargs),
            Prompt::Tokens(ids) => Ok(ids.clone()),
        }
    }

    fn tokenize_chat(&self, messages: &[Message], kwargs: &TemplateKwargs) -> Result<Vec<u32>> {
        let text = self.template.render_with(messages, true, kwargs)?;
        // Templates write BOS themselves when the model wants it; llama.cpp likewise
        // does not add a second one to rendered chat text.
        let ids = self.tokenizer.encode(&text, true, true)?;
        Ok(self.drop_double_bos(ids))
    }

    /// The prompt's tokens and how many messages were left out to fit the context: with
    /// `Truncation::Auto` a chat keeps room for `max_tokens` of reply (at most a quarter
    /// of the context).
    fn fit_prompt(&mut self, prompt: &Prompt, req: &Request) -> Result<(Vec<u32>, usize)> {
        let (Prompt::Chat(messages), Truncation::Auto) = (prompt, req.truncation) else {
            return Ok((self.tokenize_prompt_with(prompt, &req.chat_template_kwargs)?, 0));
        };
        let reserve = req.max_tokens.clamp(1, (self.context_size / 4).max(1));
        let budget = self.context_size.saturating_sub(reserve).max(1);
        let fitted = fit::fit_chat(messages, budget, self.last_dropped, |m| {
            self.tokenize_chat(m, &req.chat_template_kwargs)
        });
        let (ids, dropped) = fitted.map_err(|e| match e {
            Error::ContextOverflow { needed, .. } => Error::ContextOverflow {
                needed: needed + reserve,
                limit: self.context_size,
            },
            e => e,
        })?;
        self.last_dropped = dropped;
        Ok((ids, dropped))
    }

    fn drop_double_bos(&self, mut ids: Vec<u32>) -> Vec<u32> {
        if let Some(bos) = self.tokenizer.vocab.bos {
            if ids.len() >= 2 && ids[0] == bos && ids[1] == bos {
                ids.remove(0);
            }
        }
        ids
    }

    /// The vocabulary indexed for constrained decoding (built once).
    pub fn grammar_index(&mut self) -> Result<&GrammarIndex> {
        if self.grammar.is_none() {
            self.grammar = Some(GrammarIndex::new(&self.tokenizer, self.model.cfg.vocab_size)?);
        }
        self.grammar
            .as_ref()
            .ok_or_else(|| Error::Constraint("grammar index missing".into()))
    }

    /// Starts a request (replacing any unfinished one). Nothing runs until [`Engine::step`].
    pub fn start(&mut self, prompt: &Prompt, req: &Request) -> Result<()> {
        self.active = None;
        // Compile the constraint first: a bad schema is reported before any work is done.
        let guide = match &req.constraint {
            Some(c) => Some(self.grammar_index()?.guide(c)?),
            None => None,
        };
        let (ids, dropped) = self.fit_prompt(prompt, req)?;
        if ids.is_empty() {
            return Err(Error::InvalidRequest("the prompt is empty".into()));
        }
        if let Some(&bad) = ids.iter().find(|&&t| t as usize >= self.model.cfg.vocab_size) {
            return Err(Error::InvalidRequest(format!(
                "token id {bad} is outside the vocabulary"
            )));
        }
        if ids.len() >= self.context_size {
            return Err(Error::ContextOverflow {
                needed: ids.len() + 1,
                limit: self.context_size,
            });
        }
        // Reuse the cached prefix, but always run at least the last prompt token: its
        // logits are what the first generated token is drawn from.
        let reuse = self.cache.common_prefix(&ids).min(ids.len() - 1);
        self.cache.truncate(&self.model.backend, reuse);
        let stats = Stats {
            prompt_tokens: ids.len(),
            cached_tokens: reuse,
            prefill_tokens: ids.len() - reuse,
            dropped_messages: dropped,
            ..Default::default()
        };
        let reasoning = match prompt {
            Prompt::Chat(_) if req.separate_reasoning => Some(ReasoningSplit::new(self.opens_thinking(&ids))),
            _ => None,
        };
        self.active = Some(Active {
            sampler: Sampler::new(req.sampling.clone()),
            prompt: ids,
            prefill_from: reuse,
            max_tokens: req.max_tokens,
            ignore_eos: req.ignore_eos,
            generated: Vec::new(),
            logits: None,
            utf8: Utf8Stream::default(),
            stops: StopMatcher::new(&req.stop),
            reasoning,
            guide,
            stats,
            pending: None,
        });
        Ok(())
    }

    /// Whether a rendered chat prompt ends inside `<think>` (DeepSeek R1's and QwQ's
    /// templates open the thinking for the model).
    fn opens_thinking(&self, ids: &[u32]) -> bool {
        let tail = &ids[ids.len().saturating_sub(8)..];
        self.tokenizer.decode(tail, true).trim_end().ends_with("<think>")
    }

    pub fn is_active(&self) -> bool {
        self.active.is_some()
    }

    /// Ends the request now; the cache keeps what was computed.
    pub fn cancel(&mut self) -> Option<Step> {
        let mut a = self.active.take()?;
        Some(Self::finish(&mut a, FinishReason::Cancelled, String::new()))
    }

    /// Runs one prefill chunk or generates one token.
    pub fn step(&mut self) -> Result<Step> {
        run_now(self.step_async())
    }

    /// [`Engine::step`] for callers that must not block (the browser's GPU).
    pub async fn step_async(&mut self) -> Result<Step> {
        let (step, pending) = self.step_lazy()?;
        if let Some(logits) = pending {
            let logits = self.model.backend.read_awaited(logits).await;
            self.deliver(logits)?;
        }
        Ok(step)
    }

    /// [`Engine::step`] without waiting for the forward pass it starts: the caller reads the
    /// returned logits (on the GPU, asynchronously in the browser) and hands them to
    /// [`Engine::deliver`] before the next step.
    pub fn step_lazy(&mut self) -> Result<(Step, Option<B::Act>)> {
        let Some(a) = self.active.as_mut() else {
            return Err(Error::InvalidRequest("no request is running".into()));
        };
        if a.pending.is_some() {
            return Err(Error::InvalidRequest(
                "the previous step's logits were not delivered".into(),
            ));
        }
        let result = Self::step_active(
            &self.model,
            &self.tokenizer,
            &mut self.cache,
            self.context_size,
            self.prefill_chunk,
            a,
        );
        match result {
            Ok((step @ Step::Done { .. }, _)) => {
                self.active = None;
                Ok((step, None))
            }
            Ok(r) => Ok(r),
            Err(e) => {
                self.active = None;
                Err(e)
            }
        }
    }

    /// Hands over the logits of the pass the last [`Engine::step_lazy`] started. A failed
    /// pass ends the request and leaves the cache as it was before the pass.
    pub fn deliver(&mut self, logits: Result<Vec<f32>>) -> Result<()> {
        let Some(a) = self.active.as_mut() else {
            // Cancelled while the pass ran: its positions stay cached for the next request.
            return logits.map(|_| ());
        };
        let Some(p) = a.pending.take() else {
            return Ok(());
        };
        match logits {
            Ok(l) => {
                let spent = clock::now_ms() - p.since;
                if p.prefill {
                    a.stats.prefill_ms += spent;
                } else {
                    a.stats.decode_ms += spent;
                }
                if p.keep {
                    a.logits = Some(l);
                }
                Ok(())
            }
            Err(e) => {
                self.cache.rollback_layers(&self.model.backend, p.pos_before);
                self.active = None;
                Err(e)
            }
        }
    }

    fn step_active(
        model: &Decoder<B>,
        tok: &Tokenizer,
        cache: &mut KvCache<B>,
        ctx: usize,
        chunk: usize,
        a: &mut Active,
    ) -> Result<(Step, Option<B::Act>)> {
        if a.prefill_from < a.prompt.len() {
            let end = (a.prefill_from + chunk).min(a.prompt.len());
            let t0 = clock::now_ms();
            let pos_before = cache.len();
            let logits = model.forward_lazy(&a.prompt[a.prefill_from..end], cache, false)?;
            a.prefill_from = end;
            a.pending = Some(Pending {
                since: t0,
                prefill: true,
                keep: end == a.prompt.len(),
                pos_before,
            });
            let step = Step::Prefill {
                done: end,
                total: a.prompt.len(),
            };
            return Ok((step, Some(logits)));
        }
        if a.generated.len() >= a.max_tokens {
            let text = a.utf8.finish() + &a.stops.flush();
            return Ok((Self::finish(a, FinishReason::Length, text), None));
        }
        let Some(logits) = a.logits.take() else {
            return Err(Error::InvalidRequest("no logits to sample from".into()));
        };
        let t0 = clock::now_ms();
        let history: Vec<u32> = a.prompt.iter().chain(&a.generated).copied().collect();
        let Sampled { token, logprob, top } = match a.guide.as_mut() {
            None => a.sampler.sample(&logits, &history),
            Some(g) => {
                // Report the model's own probability of the token, not the constrained one:
                // normalise before masking (the chosen token's logit is never masked).
                let log_z = crate::sample::log_sum_exp(&logits);
                let mut logits = logits;
                g.mask_logits(&mut logits)?;
                let mut s = a.sampler.sample(&logits, &history);
                s.logprob = logits[s.token as usize] - log_z;
                s
            }
        };
        let eog = tok.is_end_of_generation(token);
        if eog && (!a.ignore_eos || a.guide.is_some()) {
            a.stats.decode_ms += clock::now_ms() - t0;
            let text = a.utf8.finish() + &a.stops.flush();
            return Ok((Self::finish(a, FinishReason::Stop, text), None));
        }
        let complete = match a.guide.as_mut() {
            Some(g) => {
                g.commit(token)?;
                g.is_finished()
            }
            None => false,
        };
        a.generated.push(token);
        let mut bytes = Vec::new();
        tok.token_bytes(token, false, &mut bytes);
        let text = a.utf8.push(&bytes);
        let (text, stopped) = match a.stops.push(&text) {
            StopResult::Emit(t) => (t, false),
            StopResult::Stopped(t) => (t, true),
        };
        if stopped {
            a.stats.decode_ms += clock::now_ms() - t0;
            return Ok((Self::finish(a, FinishReason::Stop, text), None));
        }
        if complete {
            a.stats.decode_ms += clock::now_ms() - t0;
            let rest = text + &a.utf8.finish() + &a.stops.flush();
            return Ok((Self::finish(a, FinishReason::Stop, rest), None));
        }
        // Run the token now so that the next step can sample at once; when the context is
        // full the reply ends here (documented policy: no silent truncation of the history).
        if cache.len() + 1 > ctx {
            a.stats.decode_ms += clock::now_ms() - t0;
            let rest = text + &a.utf8.finish() + &a.stops.flush();
            return Ok((Self::finish(a, FinishReason::ContextFull, rest), None));
        }
        let mut pending = None;
        if a.generated.len() < a.max_tokens {
            let pos_before = cache.len();
            pending = Some(model.forward_lazy(&[token], cache, false)?);
            a.pending = Some(Pending {
                since: clock::now_ms(),
                prefill: false,
                keep: true,
                pos_before,
            });
        }
        a.stats.decode_ms += clock::now_ms() - t0;
        let Parts { reasoning, text } = a.split(&text);
        let step = Step::Token {
            id: token,
            text,
            reasoning,
            logprob,
            top_logprobs: top,
        };
        Ok((step, pending))
    }

    fn finish(a: &mut Active, reason: FinishReason, text: String) -> Step {
        let mut parts = a.split(&text);
        if let Some(r) = a.reasoning.as_mut() {
            let rest = r.finish();
            parts.reasoning += &rest.reasoning;
            parts.text += &rest.text;
        }
        let s = &mut a.stats;
        s.generated_tokens = a.generated.len();
        s.prefill_tokens_per_s = if s.prefill_ms > 0.0 {
            s.prefill_tokens as f64 / s.prefill_ms * 1000.0
        } else {
            0.0
        };
        s.decode_tokens_per_s = if s.decode_ms > 0.0 {
            s.generated_tokens as f64 / s.decode_ms * 1000.0
        } else {
            0.0
        };
        Step::Done {
            reason,
            text: parts.text,
            reasoning: parts.reasoning,
            stats: s.clone(),
        }
    }

    /// Runs a request to the end and returns the whole reply (for the CLI and tests).
    pub fn generate(&mut self, prompt: &Prompt, req: &Request) -> Result<Generation> {
        self.start(prompt, req)?;
        let mut out = Generation::default();
        loop {
            match self.step()? {
                Step::Prefill { .. } => {}
                Step::Token {
                    id, text, reasoning, ..
                } => {
                    out.tokens.push(id);
                    out.text += &text;
                    out.reasoning += &reasoning;
                }
                Step::Done {
                    reason,
                    text,
                    reasoning,
                    stats,
                } => {
                    out.text += &text;
                    out.reasoning += &reasoning;
                    out.reason = Some(reason);
                    out.stats = stats;
                    return Ok(out);
                }
            }
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Generation {
    pub text: String,
    /// A chat reply's thinking, apart from its answer (`text`).
    pub reasoning: String,
    pub tokens: Vec<u32>,
    pub reason: Option<FinishReason>,
    pub stats: Stats,
}
