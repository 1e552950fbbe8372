//! SentencePiece-style tokenization from GGUF scores (Gemma, Llama 2), as llama.cpp does it:
//! start from characters, repeatedly merge the adjacent pair whose concatenation is the
//! highest-scoring token, then fall back to byte tokens for anything left unknown.

use super::vocab::Vocab;
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

struct Symbol {
    start: usize,
    len: usize,
    prev: isize,
    next: isize,
}

struct Bigram {
    left: usize,
    right: usize,
    score: f32,
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Bigram {
    // Max-heap: the highest score first; on ties the leftmost pair.
    fn cmp(&self, o: &Self) -> Ordering {
        self.score.total_cmp(&o.score).then_with(|| o.left.cmp(&self.left))
    }
}

pub fn encode(vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
    if text.is_empty() {
        return;
    }
    let mut syms: Vec<Symbol> = Vec::new();
    for (i, (start, c)) in text.char_indices().enumerate() {
        let len = c.len_utf8();
        let next = if start + len == text.len() { -1 } else { i as isize + 1 };
        syms.push(Symbol {
            start,
            len,
            prev: i as isize - 1,
            next,
        });
    }
    let mut heap = BinaryHeap::new();
    let mut rev_merge: HashMap<(usize, usize), (usize, usize)> = HashMap::new();
    let try_add = |syms: &Vec<Symbol>,
                   heap: &mut BinaryHeap<Bigram>,
                   rev: &mut HashMap<(usize, usize), (usize, usize)>,
                   l: isize,
                   r: isize| {
        if l < 0 || r < 0 {
            return;
        }
        let (l, r) = (l as usize, r as usize);
        let start = syms[l].start;
        let size = syms[l].len + syms[r].len;
        if let Some(id) = vocab.id(&text[start..start + size]) {
            heap.push(Bigram {
                left: l,
                right: r,
                score: vocab.scores[id as usize],
                size,
            });
            rev.insert((start, size), (l, r));
        }
    };
    for i in 1..syms.len() {
        try_add(&syms, &mut heap, &mut rev_merge, i as isize - 1, i as isize);
    }
    while let Some(b) = heap.pop() {
        let (l, r) = (b.left, b.right);
        if syms[l].len == 0 || syms[r].len == 0 || syms[l].len + syms[r].len != b.size {
            continue;
        }
        syms[l].len += syms[r].len;
        syms[r].len = 0;
        syms[l].next = syms[r].next;
        if syms[r].next >= 0 {
            let n = syms[r].next as usize;
            syms[n].prev = l as isize;
        }
        let (prev, next) = (syms[l].prev, syms[l].next);
        try_add(&syms, &mut heap, &mut rev_merge, prev, l as isize);
        try_add(&syms, &mut heap, &mut rev_merge, l as isize, next);
    }
    let mut i: isize = 0;
    while i >= 0 {
        let s = &syms[i as usize];
        resegment(vocab, text, &syms, &rev_merge, s.start, s.len, out);
        i = s.next;
    }
}

fn resegment(
    vocab: &Vocab,
    text: &str,
    syms: &[Symbol],
    rev: &HashMap<(usize, usize), (usize, usize)>,
    start: usize,
    len: usize,
    out: &mut Vec<u32>,
) {
    let piece = &text[start..start + len];
    if let Some(id) = vocab.id(piece) {
        out.push(id);
        return;
    }
    match rev.get(&(start, len)) {
        Some(&(l, r)) => {
            resegment(
                vocab,
                text,
                syms,
                rev,
                syms[l].start,
                syms[r].start - syms[l].start,
                out,
            );
            resegment(vocab, text, syms, rev, syms[r].start, start + len - syms[r].start, out);
        }
        None => {
            for b in piece.bytes() {
                if let Some(id) = vocab.id(&format!("<0x{b:02X}>")).or(vocab.unk) {
                    out.push(id);
                }
            }
        }
    }
}
