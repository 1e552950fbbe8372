//! Stop strings matched across token boundaries: text that could still be the start of a
//! stop string is held back until it either completes one (and is dropped) or cannot.

#[derive(Debug, Default, Clone)]
pub struct StopMatcher {
    stops: Vec<String>,
    pending: String,
}

pub enum StopResult {
    /// Text safe to emit now.
    Emit(String),
    /// A stop string was found: emit this text (everything before it) and end.
    Stopped(String),
}

impl StopMatcher {
    pub fn new(stops: &[String]) -> Self {
        StopMatcher {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            pending: String::new(),
        }
    }

    pub fn push(&mut self, text: &str) -> StopResult {
        self.pending.push_str(text);
        if let Some(at) = self.stops.iter().filter_map(|s| self.pending.find(s.as_str())).min() {
            let out = self.pending[..at].to_string();
            self.pending.clear();
            return StopResult::Stopped(out);
        }
        let hold = self.held_suffix_len();
        let emit_to = self.pending.len() - hold;
        let out = self.pending[..emit_to].to_string();
        self.pending.drain(..emit_to);
        StopResult::Emit(out)
    }

    /// The longest suffix of `pending` that is a proper prefix of some stop string.
    fn held_suffix_len(&self) -> usize {
        let mut best = 0;
        for s in &self.stops {
            for (i, _) in self.pending.char_indices() {
                let suffix = &self.pending[i..];
                if suffix.len() > best && s.starts_with(suffix) {
                    best = suffix.len();
                    break;
                }
            }
        }
        best
    }

    /// The reply ended another way: release whatever was held back.
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let mut m = StopMatcher::new(&stops.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let mut out = String::new();
        for p in pieces {
            match m.push(p) {
                StopResult::Emit(t) => out += &t,
                StopResult::Stopped(t) => return (out + &t, true),
            }
        }
        (out + &m.flush(), false)
    }

    #[test]
    fn stop_string_split_across_tokens_is_not_emitted() {
        assert_eq!(
            run(&["\nUser:"], &["Hi", " there\n", "Us", "er: more"]),
            ("Hi there".into(), true)
        );
    }

    #[test]
    fn held_text_is_released_when_it_cannot_match() {
        assert_eq!(run(&["STOP"], &["a ST", "OP"]), ("a ".into(), true));
        assert_eq!(run(&["STOP"], &["a ST", "ay"]), ("a STay".into(), false));
        assert_eq!(run(&["STOP"], &["end S"]), ("end S".into(), false));
    }

    #[test]
    fn earliest_stop_string_wins() {
        assert_eq!(run(&["b", "a"], &["xxab"]), ("xx".into(), true));
    }
}
