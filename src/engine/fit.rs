//! Fitting a long conversation into the context window by leaving out its oldest turns.
//!
//! It lives in the engine, not in the page, because only the engine knows how many tokens a
//! rendered conversation takes: templates add their own markers per turn.

use crate::error::{Error, Result};
use crate::tokenizer::Message;
use serde::{Deserialize, Serialize};

/// What to do with a chat prompt that leaves no room for the reply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Truncation {
    /// A `ContextOverflow` error when the prompt does not fit; nothing is left out silently.
    #[default]
    Disabled,
    /// Leave out the oldest turns (never the leading system messages nor the last message)
    /// until the prompt and room for the reply fit. Applies to chat prompts.
    Auto,
}

/// A conversation's tokens, with the fewest oldest turns left out so that at most `budget`
/// tokens hold it, and how many messages were left out.
///
/// A cut always leaves a user message first after the system messages, so templates that
/// insist on alternating roles (Gemma's) still render. When something must go, `preferred`
/// (the number left out last time, which the KV cache holds) is taken if it fits; otherwise
/// enough goes to bring the prompt under three quarters of the budget, so that the next few
/// turns fit with the same cut and reuse the cache instead of prefilling everything again.
pub fn fit_chat(
    messages: &[Message],
    budget: usize,
    preferred: usize,
    mut encode: impl FnMut(&[Message]) -> Result<Vec<u32>>,
) -> Result<(Vec<u32>, usize)> {
    let whole = encode(messages)?;
    if whole.len() <= budget {
        return Ok((whole, 0));
    }
    let lead = messages.iter().take_while(|m| m.role == "system").count();
    let cuts: Vec<usize> = (1..messages.len().saturating_sub(lead))
        .filter(|&k| messages[lead + k].role == "user")
        .collect();
    let mut encode_cut = |k: usize| -> Result<Vec<u32>> {
        let kept: Vec<Message> = messages[..lead].iter().chain(&messages[lead + k..]).cloned().collect();
        encode(&kept)
    };
    if cuts.contains(&preferred) {
        let ids = encode_cut(preferred)?;
        if ids.len() <= budget {
            return Ok((ids, preferred));
        }
    }
    // Fewer messages never take more tokens, so the smallest cut under a limit is found by
    // bisection: a few renderings instead of one per cut (a long history has many).
    let mut first_under = |limit: usize| -> Result<Option<(Vec<u32>, usize)>> {
        let (mut lo, mut hi, mut best) = (0, cuts.len(), None);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let ids = encode_cut(cuts[mid])?;
            if ids.len() <= limit {
                best = Some((ids, cuts[mid]));
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Ok(best)
    };
    if let Some(fit) = first_under(budget * 3 / 4)? {
        return Ok(fit);
    }
    if let Some(fit) = first_under(budget)? {
        return Ok(fit);
    }
    let shortest = match cuts.last() {
        Some(&k) => encode_cut(k)?.len(),
        None => whole.len(),
    };
    Err(Error::ContextOverflow {
        needed: shortest + 1,
        limit: budget,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(spec: &[(&str, usize)]) -> Vec<Message> {
        spec.iter()
            .map(|&(role, words)| Message::new(role, &"w ".repeat(words)))
            .collect()
    }

    /// One token per word plus two per message, as a stand-in for a template.
    fn encode(m: &[Message]) -> Result<Vec<u32>> {
        let n: usize = m.iter().map(|m| m.text().split_whitespace().count() + 2).sum();
        Ok(vec![0; n])
    }

    #[test]
    fn a_conversation_that_fits_is_left_whole() {
        let m = msgs(&[("system", 5), ("user", 10), ("assistant", 10), ("user", 10)]);
        assert_eq!(fit_chat(&m, 100, 0, encode).unwrap().1, 0);
    }

    #[test]
    fn the_oldest_turns_go_first_keeping_system_and_a_user_turn_first() {
        // 7 + 4 × 12 + 12 = 67 tokens.
        let m = msgs(&[
            ("system", 5),
            ("user", 10),
            ("assistant", 10),
            ("user", 10),
            ("assistant", 10),
            ("user", 10),
        ]);
        let (ids, k) = fit_chat(&m, 60, 0, encode).unwrap();
        // Leaving out one exchange (two messages) brings it under three quarters of 60.
        assert_eq!((k, ids.len()), (2, 43));
        // Cuts never start the kept turns with an assistant message.
        let (_, k) = fit_chat(&m, 58, 0, encode).unwrap();
        assert_eq!(m[1 + k].role, "user");
    }

    #[test]
    fn the_cut_the_cache_holds_is_kept_while_it_fits() {
        let m = msgs(&[
            ("user", 10),
            ("assistant", 10),
            ("user", 10),
            ("assistant", 10),
            ("user", 10),
            ("assistant", 10),
            ("user", 10),
        ]);
        // 84 tokens; leaving out 2 gives 60, 4 gives 36.
        assert_eq!(fit_chat(&m, 70, 0, encode).unwrap().1, 4);
        assert_eq!(fit_chat(&m, 70, 2, encode).unwrap().1, 2);
        // A preferred cut that no longer fits is not taken.
        assert_eq!(fit_chat(&m, 50, 2, encode).unwrap().1, 4);
        // Nor one that is not a cut (it would start with an assistant turn).
        assert_eq!(fit_chat(&m, 70, 3, encode).unwrap().1, 4);
    }

    #[test]
    fn when_only_the_last_message_is_too_long_it_is_an_error() {
        let m = msgs(&[("system", 5), ("user", 10), ("assistant", 10), ("user", 80)]);
        match fit_chat(&m, 60, 0, encode) {
            Err(Error::ContextOverflow { needed, limit }) => assert_eq!((needed, limit), (90, 60)),
            other => panic!("{other:?}"),
        }
    }
}
