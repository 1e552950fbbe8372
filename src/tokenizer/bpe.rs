//! Byte-level BPE (GPT-2 style: SmolLM2, Qwen, Llama 3) built from GGUF metadata.
//!
//! Our own rather than the `tokenizers` crate: token ids must match llama.cpp exactly,
//! including its per-model pre-tokenizer regexes keyed by `tokenizer.ggml.pre`, and the
//! vocabulary already sits in the GGUF file, so no tokenizer.json has to be synthesised.

use super::vocab::Vocab;
use crate::error::{Error, Result};
use fancy_regex::Regex;
use std::collections::HashMap;

const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen 3.5: letters keep their combining marks.
const QWEN35: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Mistral's Tekken: words split where the case changes (`[^a-z]` among letters is upper case).
const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// GPT-4o (Phi-4, Llama 4): case-split words that keep a following contraction, digits by three.
const GPT4O: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// DeepSeek V3 and Hunyuan (dense): CJK runs apart, punctuation-led words.
const DEEPSEEK3: &str = r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##;
const BAILINGMOE: &str = r"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+";
const SEED_CODER: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Jais 2: llama3's pattern with whitespace runs cut at powers of two.
const JAIS2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s{512}(?!\S)|\s{256}(?!\S)|\s{128}(?!\S)|\s{64}(?!\S)|\s{32}(?!\S)|\s{16}(?!\S)|\s{8}(?!\S)|\s{4}(?!\S)|\s{1,2}(?!\S)|\s{1}";
const PORO: &str = r" ?[^(\s|.,!?…。，、।۔،)]+";

/// How llama.cpp splits text for a `tokenizer.ggml.pre` value: the regexes, applied in
/// order (each splits the pieces the previous left), and whether a piece that is a whole
/// token is taken as is instead of being merged up from characters.
pub struct PreTokenizer {
    regexes: &'static [&'static str],
    pub ignore_merges: bool,
    /// llama.cpp adds BOS for these families unless the file says otherwise.
    pub add_bos: bool,
}

const fn pre(regexes: &'static [&'static str]) -> PreTokenizer {
    PreTokenizer {
        regexes,
        ignore_merges: false,
        add_bos: false,
    }
}

/// The names llama.cpp knows and splits with regexes alone; others (ones needing its
/// hand-written splitters, or unknown) are refused, as llama.cpp refuses unknown names,
/// rather than tokenized the wrong way.
pub fn pre_tokenizer(name: &str) -> Result<PreTokenizer> {
    const LLAMA3_FAMILY: PreTokenizer = PreTokenizer {
        regexes: &[LLAMA3],
        ignore_merges: true,
        add_bos: true,
    };
    Ok(match name {
        "default" => pre(&[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"]),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2" => {
            LLAMA3_FAMILY
        }
        "dbrx" | "smaug-bpe" | "chatglm-bpe" | "glm4" => pre(&[LLAMA3]),
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "megrez" | "stablelm2" | "hunyuan" | "solar-open" | "grok-2" => {
            pre(&[QWEN2])
        }
        "qwen35" => pre(&[QWEN35]),
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva-7b" | "mellum2" => {
            pre(&[r"\p{N}", GPT2])
        }
        "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de" | "a.x-4.0" | "mellum"
        | "exaone4" | "mpt" | "olmo" | "jais" | "trillion" | "granite-docling" | "jina-v1-en" | "jina-v2-code"
        | "roberta-bpe" => pre(&[GPT2]),
        "falcon" => pre(&[r"[\p{P}\$\+<=>\^~\|`]+", GPT2, r"[0-9][0-9][0-9]"]),
        "deepseek-coder" => pre(&[r"[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", r"[一-龥ࠀ-一가-퟿]+", r"\p{N}"]),
        "deepseek-v3" | "hunyuan-dense" => pre(&[r"\p{N}{1,3}", r"[一-龥぀-ゟ゠-ヿ]+", DEEPSEEK3]),
        "poro-chat" | "bloom" | "gpt3-finnish" => pre(&[PORO]),
        "viking" => pre(&[PORO, r"\p{N}"]),
        "tekken" => PreTokenizer {
            regexes: &[TEKKEN],
            ignore_merges: true,
            add_bos: true,
        },
        "gpt-4o" | "llama4" | "minimax-m2" | "kanana2" => pre(&[GPT4O]),
        "superbpe" => pre(&[r"\p{N}+", r"(?=(\d{3})+(?!\d))"]),
        "bailingmoe" | "bailingmoe2" | "llada-moe" => pre(&[BAILINGMOE]),
        "seed-coder" => pre(&[SEED_CODER]),
        "jais-2" => pre(&[JAIS2]),
        other => {
            return Err(Error::Tokenizer(format!(
                "the pre-tokenizer `{other}` (tokenizer.ggml.pre) is not supported"
            )))
        }
    })
}

/// GPT-2's reversible map from bytes to printable characters.
fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut extra = 0u32;
    for b in 0..256u32 {
        let printable = (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        table[b as usize] = if printable {
            char::from_u32(b).unwrap_or('\0')
        } else {
            extra += 1;
            char::from_u32(255 + extra).unwrap_or('\0')
        };
    }
    table
}

pub struct Bpe {
    regexes: Vec<Regex>,
    ignore_merges: bool,
    /// (left id, right id) -> (rank, merged id).
    merges: HashMap<(u32, u32), (u32, u32)>,
    byte_to_char: [char; 256],
    char_to_byte: HashMap<char, u8>,
}

impl Bpe {
    pub fn new(vocab: &Vocab, merges: &[String], pre: &str) -> Result<Self> {
        let pre = pre_tokenizer(pre)?;
        let regexes = pre
            .regexes
            .iter()
            .map(|r| Regex::new(r).map_err(|e| Error::Tokenizer(format!("pre-tokenizer regex: {e}"))))
            .collect::<Result<Vec<_>>>()?;
        let mut table = HashMap::with_capacity(merges.len());
        for (rank, m) in merges.iter().enumerate() {
            let Some((l, r)) = m.split_once(' ') else {
                return Err(Error::Tokenizer(format!("merge `{m}` has no space")));
            };
            // A merge whose parts or result are not tokens can never fire.
            if let (Some(li), Some(ri), Some(mi)) = (vocab.id(l), vocab.id(r), vocab.id(&format!("{l}{r}"))) {
                table.entry((li, ri)).or_insert((rank as u32, mi));
            }
        }
        let byte_to_char = byte_to_char_table();
        let char_to_byte = byte_to_char.iter().enumerate().map(|(b, &c)| (c, b as u8)).collect();
        Ok(Bpe {
            regexes,
            ignore_merges: pre.ignore_merges,
            merges: table,
            byte_to_char,
            char_to_byte,
        })
    }

    fn split<'t>(&self, text: &'t str) -> Vec<&'t str> {
        let mut pieces = vec![text];
        for re in &self.regexes {
            let mut out = Vec::with_capacity(pieces.len() * 2);
            for piece in pieces {
                let mut last = 0;
                for m in re.find_iter(piece).flatten() {
                    if m.start() > last {
                        out.push(&piece[last..m.start()]);
                    }
                    if m.end() > m.start() {
                        out.push(m.as_str());
                    }
                    last = m.end();
                }
                if last < piece.len() {
                    out.push(&piece[last..]);
                }
            }
            pieces = out;
        }
        pieces
    }

    pub fn encode(&self, vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
        for word in self.split(text) {
            let mapped: String = word.bytes().map(|b| self.byte_to_char[b as usize]).collect();
            // llama.cpp takes whole-word tokens as they are for some families only; for the
            // others merges decide, and may not rebuild the word's token.
            if self.ignore_merges {
                if let Some(id) = vocab.id(&mapped) {
                    out.push(id);
                    continue;
                }
            }
            self.merge_word(vocab, &mapped, out);
        }
    }

    fn merge_word(&self, vocab: &Vocab, word: &str, out: &mut Vec<u32>) {
        // Symbols: (byte range in `word`, token id if the text is a token).
        let mut syms: Vec<(usize, usize, Option<u32>)> = word
            .char_indices()
            .map(|(i, c)| (i, i + c.len_utf8(), vocab.id(&word[i..i + c.len_utf8()])))
            .collect();
        loop {
            let mut best: Option<(u32, usize, u32)> = None;
            for i in 0..syms.len().saturating_sub(1) {
                if let (Some(l), Some(r)) = (syms[i].2, syms[i + 1].2) {
                    if let Some(&(rank, merged)) = self.merges.get(&(l, r)) {
                        if best.is_none_or(|(b, _, _)| rank < b) {
                            best = Some((rank, i, merged));
                        }
                    }
                }
            }
            let Some((_, i, merged)) = best else { break };
            syms[i] = (syms[i].0, syms[i + 1].1, Some(merged));
            syms.remove(i + 1);
        }
        for (s, e, id) in syms {
            match id {
                Some(id) => out.push(id),
                // A character that is not a token: fall back to its bytes' characters.
                None => {
                    for c in word[s..e].chars() {
                        if let Some(id) = vocab.id(c.encode_utf8(&mut [0; 4])) {
                            out.push(id);
                        }
                    }
                }
            }
        }
    }

    /// Raw bytes of a normal token's text.
    pub fn token_bytes(&self, text: &str, out: &mut Vec<u8>) {
        for c in text.chars() {
            match self.char_to_byte.get(&c) {
                Some(&b) => out.push(b),
                None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
            }
        }
    }
}
