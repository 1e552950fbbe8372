//! A reasoning model's thinking (`<think>…</think>` before the answer: Qwen3, QwQ, DeepSeek
//! R1, SmolLM3, GLM) taken apart from its answer as the text streams, so that a chat can show
//! the answer as the reply and the thinking folded away, as reasoning models' servers return
//! it (`reasoning_content`). Tags split across tokens are held back until they are whole.

const OPEN: &str = "<think>";
const CLOSE: &str = "</think>";

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// Nothing but whitespace yet: the reply may still open with `<think>`.
    Start,
    Thinking,
    /// Just past `</think>`: the answer's leading whitespace is dropped.
    AnswerStart,
    Answer,
}

#[derive(Debug, Clone)]
pub struct ReasoningSplit {
    state: State,
    held: String,
}

/// Text for the thinking and for the answer, from one piece of the reply.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Parts {
    pub reasoning: String,
    pub text: String,
}

impl ReasoningSplit {
    /// `open`: the prompt itself ends in `<think>` (templates that start the thinking for the
    /// model, such as DeepSeek R1's and QwQ's), so the reply begins inside it.
    pub fn new(open: bool) -> Self {
        ReasoningSplit {
            state: if open { State::Thinking } else { State::Start },
            held: String::new(),
        }
    }

    pub fn push(&mut self, piece: &str) -> Parts {
        let mut out = Parts::default();
        self.held.push_str(piece);
        loop {
            match self.state {
                State::Start => {
                    let t = self.held.trim_start();
                    if let Some(rest) = t.strip_prefix(OPEN) {
                        self.held = rest.to_string();
                        self.state = State::Thinking;
                    } else if OPEN.starts_with(t) {
                        return out; // empty, or a tag still arriving
                    } else {
                        self.state = State::Answer;
                    }
                }
                State::Thinking => {
                    if let Some(at) = self.held.find(CLOSE) {
                        out.reasoning.push_str(&self.held[..at]);
                        self.held.drain(..at + CLOSE.len());
                        self.state = State::AnswerStart;
                    } else {
                        let keep = partial_suffix(&self.held, CLOSE);
                        let emit = self.held.len() - keep;
                        out.reasoning.push_str(&self.held[..emit]);
                        self.held.drain(..emit);
                        return out;
                    }
                }
                State::AnswerStart => {
                    let t = self.held.trim_start();
                    if t.is_empty() {
                        self.held.clear();
                        return out;
                    }
                    self.held = t.to_string();
                    self.state = State::Answer;
                }
                State::Answer => {
                    out.text.push_str(&self.held);
                    self.held.clear();
                    return out;
                }
            }
        }
    }

    /// What is still held when the reply ends: an unfinished tag is text of the part it is in.
    pub fn finish(&mut self) -> Parts {
        let held = std::mem::take(&mut self.held);
        match self.state {
            State::Thinking => Parts {
                reasoning: held,
                text: String::new(),
            },
            State::AnswerStart => Parts::default(),
            State::Start | State::Answer => Parts {
                reasoning: String::new(),
                text: held,
            },
        }
    }
}

/// The length of the longest suffix of `s` that is a proper prefix of `tag`.
fn partial_suffix(s: &str, tag: &str) -> usize {
    (1..tag.len().min(s.len() + 1))
        .rev()
        .find(|&n| s.is_char_boundary(s.len() - n) && tag.starts_with(&s[s.len() - n..]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds the pieces one by one and joins what comes out.
    fn run(open: bool, pieces: &[&str]) -> (String, String, Vec<Parts>) {
        let mut s = ReasoningSplit::new(open);
        let mut steps: Vec<Parts> = pieces.iter().map(|p| s.push(p)).collect();
        steps.push(s.finish());
        let r = steps.iter().map(|p| p.reasoning.as_str()).collect();
        let t = steps.iter().map(|p| p.text.as_str()).collect();
        (r, t, steps)
    }

    #[test]
    fn thinking_comes_apart_from_the_answer_across_piece_boundaries() {
        let text = "<think>\nLet me see: 2+2 is 4 </ not yet.\n</think>\n\nThe answer is 4.";
        // Every way of cutting the text in two, and one character at a time.
        for cut in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
            let (r, t, _) = run(false, &[&text[..cut], &text[cut..]]);
            assert_eq!(r, "\nLet me see: 2+2 is 4 </ not yet.\n", "cut at {cut}");
            assert_eq!(t, "The answer is 4.", "cut at {cut}");
        }
        let chars: Vec<String> = text.chars().map(String::from).collect();
        let pieces: Vec<&str> = chars.iter().map(String::as_str).collect();
        let (r, t, steps) = run(false, &pieces);
        assert_eq!(
            (r.as_str(), t.as_str()),
            ("\nLet me see: 2+2 is 4 </ not yet.\n", "The answer is 4.")
        );
        // The thinking streams as it comes, not all at the end.
        let streamed = steps.iter().position(|p| !p.reasoning.is_empty()).unwrap();
        assert!(streamed < 12, "the first thinking came out at piece {streamed}");
    }

    #[test]
    fn a_reply_without_thinking_is_all_answer_and_unchanged() {
        for text in [
            "Paris.",
            "  Paris.",
            "<thin",
            "<b>bold</b>",
            "The tag <think> later",
            "",
        ] {
            let (r, t, _) = run(false, &[text]);
            assert_eq!((r.as_str(), t.as_str()), ("", text));
        }
        let (r, t, _) = run(false, &["<", "b>x"]);
        assert_eq!((r.as_str(), t.as_str()), ("", "<b>x"));
    }

    #[test]
    fn a_prompt_that_opens_the_thinking_starts_inside_it() {
        let (r, t, _) = run(true, &["First, ", "recall.</th", "ink>", "\n", "Paris."]);
        assert_eq!((r.as_str(), t.as_str()), ("First, recall.", "Paris."));
    }

    #[test]
    fn unfinished_thinking_stays_thinking() {
        // max_tokens reached mid-thought: what came is thinking, including a partial tag.
        let (r, t, _) = run(false, &["<think>", "Hmm </thi"]);
        assert_eq!((r.as_str(), t.as_str()), ("Hmm </thi", ""));
        let (r, t, _) = run(false, &["<think>x</think>", "  \n"]);
        assert_eq!((r.as_str(), t.as_str()), ("x", ""));
    }

    #[test]
    fn multibyte_text_next_to_a_partial_tag() {
        let (r, t, _) = run(false, &["<think>é", "</", "think>ü"]);
        assert_eq!((r.as_str(), t.as_str()), ("é", "ü"));
        assert_eq!(partial_suffix("aé<", "</think>"), 1);
        assert_eq!(partial_suffix("é", "</think>"), 0);
    }
}
