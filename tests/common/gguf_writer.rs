//! A tiny GGUF writer for building valid and deliberately broken files in tests.

pub enum Kv {
    U32(u32),
    F32(f32),
    Str(String),
    StrArray(Vec<String>),
    F32Array(Vec<f32>),
    I32Array(Vec<i32>),
}

pub struct Tensor {
    pub name: String,
    pub dims: Vec<u64>,
    pub type_id: u32,
    pub data: Vec<u8>,
}

pub struct GgufBuilder {
    pub version: u32,
    pub kvs: Vec<(String, Kv)>,
    pub tensors: Vec<Tensor>,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

impl GgufBuilder {
    pub fn new() -> Self {
        GgufBuilder {
            version: 3,
            kvs: vec![],
            tensors: vec![],
        }
    }

    pub fn kv(mut self, k: &str, v: Kv) -> Self {
        self.kvs.push((k.into(), v));
        self
    }

    pub fn f32_tensor(mut self, name: &str, dims: &[u64], values: &[f32]) -> Self {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensors.push(Tensor {
            name: name.into(),
            dims: dims.to_vec(),
            type_id: 0,
            data,
        });
        self
    }

    pub fn build(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(self.version.to_le_bytes());
        out.extend((self.tensors.len() as u64).to_le_bytes());
        out.extend((self.kvs.len() as u64).to_le_bytes());
        for (k, v) in &self.kvs {
            put_str(&mut out, k);
            match v {
                Kv::U32(x) => {
                    out.extend(4u32.to_le_bytes());
                    out.extend(x.to_le_bytes());
                }
                Kv::F32(x) => {
                    out.extend(6u32.to_le_bytes());
                    out.extend(x.to_le_bytes());
                }
                Kv::Str(s) => {
                    out.extend(8u32.to_le_bytes());
                    put_str(&mut out, s);
                }
                Kv::StrArray(a) => {
                    out.extend(9u32.to_le_bytes());
                    out.extend(8u32.to_le_bytes());
                    out.extend((a.len() as u64).to_le_bytes());
                    for s in a {
                        put_str(&mut out, s);
                    }
                }
                Kv::F32Array(a) => {
                    out.extend(9u32.to_le_bytes());
                    out.extend(6u32.to_le_bytes());
                    out.extend((a.len() as u64).to_le_bytes());
                    for x in a {
                        out.extend(x.to_le_bytes());
                    }
                }
                Kv::I32Array(a) => {
                    out.extend(9u32.to_le_bytes());
                    out.extend(5u32.to_le_bytes());
                    out.extend((a.len() as u64).to_le_bytes());
                    for x in a {
                        out.extend(x.to_le_bytes());
                    }
                }
            }
        }
        let mut offset = 0u64;
        let mut offsets = vec![];
        for t in &self.tensors {
            offsets.push(offset);
            offset += (t.data.len() as u64).div_ceil(32) * 32;
        }
        for (t, off) in self.tensors.iter().zip(&offsets) {
            put_str(&mut out, &t.name);
            out.extend((t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend(d.to_le_bytes());
            }
            out.extend(t.type_id.to_le_bytes());
            out.extend(off.to_le_bytes());
        }
        while !out.len().is_multiple_of(32) {
            out.push(0);
        }
        for t in &self.tensors {
            out.extend(&t.data);
            while !out.len().is_multiple_of(32) {
                out.push(0);
            }
        }
        out
    }
}

/// A complete, tiny llama-architecture model: 1 layer, width 32, vocabulary of 8 characters.
pub fn tiny_llama() -> GgufBuilder {
    let (d, ff, vocab) = (32u64, 64u64, 8u64);
    let w = |n: u64| {
        (0..n)
            .map(|i| ((i * 7919 % 97) as f32 - 48.0) / 400.0)
            .collect::<Vec<f32>>()
    };
    let tokens: Vec<String> = ["<unk>", "<s>", "</s>", "a", "b", "c", "\u{2581}", "\u{2581}a"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    GgufBuilder::new()
        .kv("general.architecture", Kv::Str("llama".into()))
        .kv("llama.block_count", Kv::U32(1))
        .kv("llama.embedding_length", Kv::U32(d as u32))
        .kv("llama.feed_forward_length", Kv::U32(ff as u32))
        .kv("llama.attention.head_count", Kv::U32(4))
        .kv("llama.attention.head_count_kv", Kv::U32(2))
        .kv("llama.context_length", Kv::U32(64))
        .kv("llama.attention.layer_norm_rms_epsilon", Kv::F32(1e-5))
        .kv("tokenizer.ggml.model", Kv::Str("llama".into()))
        .kv("tokenizer.ggml.tokens", Kv::StrArray(tokens))
        .kv(
            "tokenizer.ggml.scores",
            Kv::F32Array(vec![0.0, 0.0, 0.0, -1.0, -1.0, -1.0, -2.0, -0.5]),
        )
        .kv("tokenizer.ggml.token_type", Kv::I32Array(vec![2, 3, 3, 1, 1, 1, 1, 1]))
        .kv("tokenizer.ggml.bos_token_id", Kv::U32(1))
        .kv("tokenizer.ggml.eos_token_id", Kv::U32(2))
        .f32_tensor("token_embd.weight", &[d, vocab], &w(d * vocab))
        .f32_tensor("blk.0.attn_norm.weight", &[d], &vec![1.0; d as usize])
        .f32_tensor("blk.0.attn_q.weight", &[d, d], &w(d * d))
        .f32_tensor("blk.0.attn_k.weight", &[d, d / 2], &w(d * d / 2))
        .f32_tensor("blk.0.attn_v.weight", &[d, d / 2], &w(d * d / 2))
        .f32_tensor("blk.0.attn_output.weight", &[d, d], &w(d * d))
        .f32_tensor("blk.0.ffn_norm.weight", &[d], &vec![1.0; d as usize])
        .f32_tensor("blk.0.ffn_gate.weight", &[d, ff], &w(d * ff))
        .f32_tensor("blk.0.ffn_up.weight", &[d, ff], &w(d * ff))
        .f32_tensor("blk.0.ffn_down.weight", &[ff, d], &w(d * ff))
        .f32_tensor("output_norm.weight", &[d], &vec![1.0; d as usize])
}
