//! Scoring: the log-probability the model gives to candidate continuations of a prompt.
//! The prompt is run once; every continuation starts from its cached keys and values.

use super::{run_now, Engine, Prompt};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::sample::log_sum_exp;
use crate::tokenizer::TemplateKwargs;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Scored {
    /// Σ log p(token) over the continuation's tokens.
    pub logprob: f32,
    pub token_logprobs: Vec<f32>,
}

impl<B: Backend> Engine<B> {
    /// Log-probabilities of each continuation after `prompt`. Continuations are tokenized on
    /// their own (no BOS, special-token texts kept as text), so write them with the leading
    /// space they would have in running text where that matters.
    pub fn score(&mut self, prompt: &Prompt, continuations: &[String]) -> Result<Vec<Scored>> {
        self.score_with(prompt, continuations, &TemplateKwargs::new())
    }

    /// [`Engine::score`] with a chat prompt rendered with these template switches.
    pub fn score_with(
        &mut self,
        prompt: &Prompt,
        continuations: &[String],
        kwargs: &TemplateKwargs,
    ) -> Result<Vec<Scored>> {
        run_now(self.score_async(prompt, continuations, kwargs))
    }

    /// [`Engine::score_with`] for callers that must not block (the browser's GPU).
    pub async fn score_async(
        &mut self,
        prompt: &Prompt,
        continuations: &[String],
        kwargs: &TemplateKwargs,
    ) -> Result<Vec<Scored>> {
        self.active = None;
        let prompt_ids = self.tokenize_prompt_with(prompt, kwargs)?;
        if prompt_ids.is_empty() {
            return Err(Error::InvalidRequest("the prompt is empty".into()));
        }
        let conts = continuations
            .iter()
            .map(|c| self.tokenizer.encode(c, false, false))
            .collect::<Result<Vec<_>>>()?;
        if let Some(i) = conts.iter().position(|c| c.is_empty()) {
            return Err(Error::InvalidRequest(format!("continuation {i} is empty")));
        }
        let longest = conts.iter().map(Vec::len).max().unwrap_or(0);
        if prompt_ids.len() + longest > self.context_size {
            return Err(Error::ContextOverflow {
                needed: prompt_ids.len() + longest,
                limit: self.context_size,
            });
        }

        // Run the prompt (reusing what the cache already holds), keeping its last logits.
        let reuse = self.cache.common_prefix(&prompt_ids).min(prompt_ids.len() - 1);
        self.cache.truncate(&self.model.backend, reuse);
        let mut last = Vec::new();
        for chunk in prompt_ids[reuse..].chunks(self.prefill_chunk.max(1)) {
            self.checkpoint().await?;
            last = self.model.forward_async(chunk, &mut self.cache, false).await?;
        }
        // One normaliser per row: the full log-softmax over a 262k vocabulary is not needed.
        let first_lse = log_sum_exp(&last);
        let vocab = self.model.cfg.vocab_size;

        let mut out = Vec::with_capacity(conts.len());
        for c in &conts {
            let mut lps = vec![last[c[0] as usize] - first_lse];
            if c.len() > 1 {
                self.checkpoint().await?;
                // Teacher-forced: row i predicts token i + 1.
                let logits = self.model.forward_async(&c[..c.len() - 1], &mut self.cache, true).await;
                self.cache.truncate(&self.model.backend, prompt_ids.len());
                for (row, &next) in logits?.chunks_exact(vocab).zip(&c[1..]) {
                    lps.push(row[next as usize] - log_sum_exp(row));
                }
            }
            out.push(Scored {
                logprob: lps.iter().sum(),
                token_logprobs: lps,
            });
        }
        Ok(out)
    }
}
