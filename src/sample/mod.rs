//! Turning logits into the next token: penalties, logit bias, truncation (top-k, top-p,
//! min-p), temperature and a seeded random draw, in llama.cpp's order.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    /// 0 means greedy (always the most likely token).
    pub temperature: f32,
    /// 0 disables.
    pub top_k: usize,
    /// 1 disables.
    pub top_p: f32,
    /// 0 disables: drop tokens less likely than `min_p` × the most likely one.
    pub min_p: f32,
    /// 1 disables: divides positive (multiplies negative) logits of recent tokens.
    pub repetition_penalty: f32,
    /// Subtracted once from the logit of every recent token.
    pub presence_penalty: f32,
    /// Subtracted per occurrence of a recent token.
    pub frequency_penalty: f32,
    /// How many recent tokens the penalties look at.
    pub penalty_last_n: usize,
    /// Added to the logits of the given token ids (−inf bans a token).
    pub logit_bias: Vec<(u32, f32)>,
    /// Same seed and same input give the same text; `None` draws one.
    pub seed: Option<u64>,
    /// How many alternatives (with log-probabilities) to report per emitted token.
    pub top_logprobs: usize,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.7,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            penalty_last_n: 64,
            logit_bias: Vec::new(),
            seed: None,
            top_logprobs: 0,
        }
    }
}

impl SamplingParams {
    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sampled {
    pub token: u32,
    /// Log-probability of the token under the model (before sampling transforms).
    pub logprob: f32,
    /// The most likely alternatives under the model, best first.
    pub top: Vec<(u32, f32)>,
}

pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        let seed = params.seed.unwrap_or_else(crate::engine::clock::entropy);
        Sampler {
            rng: ChaCha8Rng::seed_from_u64(seed),
            params,
        }
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Picks the next token. `history` is every token so far (for the penalties).
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> Sampled {
        let p = &self.params;
        let max = max_value(logits);
        let log_z = log_sum_exp_from(logits, max);
        let top = if p.top_logprobs > 0 {
            top_n(logits, p.top_logprobs)
                .into_iter()
                .map(|(i, l)| (i, l - log_z))
                .collect()
        } else {
            vec![]
        };

        // The logits as the rules change them; untouched (no copy of Gemma 3's 262144 values
        // a token) when no bias or penalty applies, and then their maximum is known already.
        let l: std::borrow::Cow<[f32]> = if p.logit_bias.is_empty() && !penalties_apply(p) {
            std::borrow::Cow::Borrowed(logits)
        } else {
            let mut copy = logits.to_vec();
            for &(id, bias) in &p.logit_bias {
                if let Some(v) = copy.get_mut(id as usize) {
                    *v += bias;
                }
            }
            apply_penalties(&mut copy, history, p);
            std::borrow::Cow::Owned(copy)
        };

        let token = match (&l, p.temperature <= 0.0) {
            (std::borrow::Cow::Borrowed(_), true) => argmax_given(&l, max),
            (_, true) => argmax(&l),
            (_, false) => self.draw(&l),
        };
        Sampled {
            token,
            logprob: logits[token as usize] - log_z,
            top,
        }
    }

    fn draw(&mut self, l: &[f32]) -> u32 {
        let p = &self.params;
        let mut cand: Vec<(u32, f32)> = l
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(i, &v)| (i as u32, v))
            .collect();
        if cand.is_empty() {
            return argmax(l);
        }
        cand.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if p.top_k > 0 && p.top_k < cand.len() {
            cand.truncate(p.top_k);
        }
        // Probabilities at temperature 1 for the truncation rules (as llama.cpp does).
        let max = cand[0].1;
        let probs: Vec<f32> = cand.iter().map(|(_, v)| (v - max).exp()).collect();
        let sum: f32 = probs.iter().sum();
        if p.top_p < 1.0 {
            let mut acc = 0.0;
            let mut keep = cand.len();
            for (i, pr) in probs.iter().enumerate() {
                acc += pr / sum;
                if acc >= p.top_p {
                    keep = i + 1;
                    break;
                }
            }
            cand.truncate(keep.max(1));
        }
        if p.min_p > 0.0 {
            // probs[0] is the most likely token: relative threshold.
            let keep = probs
                .iter()
                .take(cand.len())
                .take_while(|&&pr| pr >= p.min_p * probs[0])
                .count();
            cand.truncate(keep.max(1));
        }
        let t = p.temperature;
        let weights: Vec<f32> = cand.iter().map(|(_, v)| ((v - max) / t).exp()).collect();
        let total: f32 = weights.iter().sum();
        let r = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total as f64;
        let mut acc = 0.0f64;
        for (i, w) in weights.iter().enumerate() {
            acc += *w as f64;
            if r < acc {
                return cand[i].0;
            }
        }
        cand[cand.len() - 1].0
    }
}

fn penalties_apply(p: &SamplingParams) -> bool {
    p.repetition_penalty != 1.0 || p.presence_penalty != 0.0 || p.frequency_penalty != 0.0
}

fn apply_penalties(l: &mut [f32], history: &[u32], p: &SamplingParams) {
    if !penalties_apply(p) {
        return;
    }
    let recent = &history[history.len().saturating_sub(p.penalty_last_n)..];
    let mut counts: HashMap<u32, u32> = HashMap::new();
    for &t in recent {
        *counts.entry(t).or_default() += 1;
    }
    for (&t, &c) in &counts {
        let Some(v) = l.get_mut(t as usize) else {
            continue;
        };
        if *v > 0.0 {
            *v /= p.repetition_penalty;
        } else {
            *v *= p.repetition_penalty;
        }
        *v -= c as f32 * p.frequency_penalty + p.presence_penalty;
    }
}

/// The first index of the largest value (NaNs never win; a NaN first gives 0).
pub fn argmax(x: &[f32]) -> u32 {
    argmax_given(x, max_value(x))
}

/// [`argmax`] where `max` is already known to be `max_value(x)`.
fn argmax_given(x: &[f32], max: f32) -> u32 {
    if x.first().is_none_or(|v| v.is_nan()) {
        return 0;
    }
    first_index_of(x, max).unwrap_or(0) as u32
}

pub fn log_sum_exp(x: &[f32]) -> f32 {
    log_sum_exp_from(x, max_value(x))
}

/// [`log_sum_exp`] where `max` is already known to be `max_value(x)`.
fn log_sum_exp_from(x: &[f32], max: f32) -> f32 {
    if !max.is_finite() {
        return max;
    }
    max + sum_exp(x, max).ln()
}

/// The largest value, NaNs skipped (`f32::max`'s rule, so any order gives the same result):
/// in the browser sixteen lanes at a time, where the scalar chain of maxima over Gemma's
/// 262144 logits cost about a third of a millisecond a token.
fn max_value(x: &[f32]) -> f32 {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return crate::backend::kernels::simd128::max_value(x);
    #[allow(unreachable_code)]
    x.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

fn first_index_of(x: &[f32], value: f32) -> Option<usize> {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return crate::backend::kernels::simd128::first_index_of(x, value);
    #[allow(unreachable_code)]
    x.iter().position(|&v| v == value)
}

/// `Σ e^(v − max)`: in the browser four at a time (for Gemma's 262144 logits the scalar
/// exponentials took 2 ms a token, a tenth of the step).
fn sum_exp(x: &[f32], max: f32) -> f32 {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return crate::backend::kernels::simd128::sum_exp(x, max);
    #[allow(unreachable_code)]
    x.iter().map(|v| (v - max).exp()).sum::<f32>()
}

/// Log-softmax of `x`.
pub fn log_softmax(x: &[f32]) -> Vec<f32> {
    let z = log_sum_exp(x);
    x.iter().map(|v| v - z).collect()
}

fn top_n(x: &[f32], n: usize) -> Vec<(u32, f32)> {
    let mut idx: Vec<(u32, f32)> = x.iter().enumerate().map(|(i, &v)| (i as u32, v)).collect();
    let n = n.min(idx.len());
    idx.select_nth_unstable_by(n.saturating_sub(1), |a, b| b.1.total_cmp(&a.1));
    idx.truncate(n);
    idx.sort_by(|a, b| b.1.total_cmp(&a.1));
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(f: impl FnOnce(&mut SamplingParams)) -> SamplingParams {
        let mut p = SamplingParams {
            seed: Some(7),
            ..SamplingParams::greedy()
        };
        f(&mut p);
        p
    }

    #[test]
    fn greedy_picks_the_max_and_reports_logprobs() {
        let mut s = Sampler::new(params(|p| p.top_logprobs = 2));
        let r = s.sample(&[0.0, 2.0, 1.0], &[]);
        assert_eq!(r.token, 1);
        assert_eq!(r.top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 2]);
        let total: f32 = log_softmax(&[0.0, 2.0, 1.0]).iter().map(|v| v.exp()).sum();
        assert!((total - 1.0).abs() < 1e-5);
        assert!((r.logprob - log_softmax(&[0.0, 2.0, 1.0])[1]).abs() < 1e-6);
    }

    #[test]
    fn logit_bias_can_ban_a_token() {
        let mut s = Sampler::new(params(|p| p.logit_bias = vec![(1, f32::NEG_INFINITY)]));
        assert_eq!(s.sample(&[0.0, 2.0, 1.0], &[]).token, 2);
    }

    #[test]
    fn penalties_push_repeated_tokens_down() {
        let mut s = Sampler::new(params(|p| p.repetition_penalty = 4.0));
        assert_eq!(s.sample(&[0.0, 2.0, 1.0], &[1]).token, 2);
        let mut s = Sampler::new(params(|p| p.frequency_penalty = 0.6));
        assert_eq!(s.sample(&[0.0, 2.0, 1.0], &[1, 1]).token, 2);
        let mut s = Sampler::new(params(|p| p.presence_penalty = 0.5));
        assert_eq!(s.sample(&[0.0, 2.0, 1.8], &[1, 1, 1]).token, 2);
    }

    #[test]
    fn truncation_rules_limit_the_candidates() {
        let logits = [3.0, 2.9, 2.8, -5.0];
        for (p, allowed) in [
            (
                params(|p| {
                    p.temperature = 5.0;
                    p.top_k = 1
                }),
                vec![0],
            ),
            (
                params(|p| {
                    p.temperature = 5.0;
                    p.top_p = 0.5
                }),
                vec![0, 1],
            ),
            (
                params(|p| {
                    p.temperature = 5.0;
                    p.min_p = 0.5
                }),
                vec![0, 1, 2],
            ),
        ] {
            let mut s = Sampler::new(p);
            for _ in 0..200 {
                let t = s.sample(&logits, &[]).token;
                assert!(allowed.contains(&t), "token {t} outside {allowed:?}");
            }
        }
    }

    #[test]
    fn same_seed_same_draws_and_temperature_spreads_them() {
        let logits = [1.0, 1.0, 1.0, 1.0];
        let draw = |seed| {
            let mut s = Sampler::new(params(|p| {
                p.temperature = 1.0;
                p.seed = Some(seed)
            }));
            (0..50).map(|_| s.sample(&logits, &[]).token).collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
        let d = draw(3);
        for t in 0..4 {
            assert!(d.contains(&t), "uniform logits never drew {t}");
        }
    }
}
