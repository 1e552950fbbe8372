//! The one forward pass for every supported family (Llama, Qwen 2/3, Gemma 3, Phi-3),
//! driven by [`Config`]: optional QK-norm, post-norms, sliding windows and soft-capping
//! are switches, not copies of the model code.

use super::config::{Activation, Config};
use super::kv_cache::KvCache;
use crate::backend::cpu::{self, AttentionShape, Linear};
use crate::error::{Error, Result};
use crate::gguf::Gguf;
use candle_core::quantized::QTensor;
use std::sync::Arc;

enum Qkv {
    Split {
        q: Linear,
        k: Linear,
        v: Linear,
    },
    /// Phi-3 stores Q, K and V as one matrix.
    Fused(Linear),
}

enum Ffn {
    Gated {
        gate: Linear,
        up: Linear,
    },
    /// Phi-3 stores gate and up as one matrix (gate first).
    FusedGateUp(Linear),
}

struct Layer {
    attn_norm: Vec<f32>,
    qkv: Qkv,
    q_norm: Option<Vec<f32>>,
    k_norm: Option<Vec<f32>>,
    o: Linear,
    post_attn_norm: Option<Vec<f32>>,
    ffn_norm: Vec<f32>,
    ffn: Ffn,
    down: Linear,
    post_ffn_norm: Option<Vec<f32>>,
    inv_freq: Vec<f32>,
    window: Option<usize>,
}

pub struct Decoder {
    pub cfg: Config,
    embed: Arc<QTensor>,
    layers: Vec<Layer>,
    output_norm: Vec<f32>,
    output: Linear,
}

struct Loader<'a>(&'a mut Gguf);

impl Loader<'_> {
    fn has(&self, name: &str) -> bool {
        self.0.tensors.contains_key(name)
    }
    fn qt(&mut self, name: &str) -> Result<QTensor> {
        self.0.take(name)
    }
    fn f32(&mut self, name: &str, len: usize) -> Result<Vec<f32>> {
        let v = cpu::to_f32(&self.qt(name)?)?;
        if v.len() != len {
            return Err(Error::Metadata(format!(
                "`{name}` has {} values, expected {len}",
                v.len()
            )));
        }
        Ok(v)
    }
    fn opt_f32(&mut self, name: &str, len: usize) -> Result<Option<Vec<f32>>> {
        if self.has(name) {
            self.f32(name, len).map(Some)
        } else {
            Ok(None)
        }
    }
    fn linear(&mut self, name: &str, out_dim: usize, in_dim: usize) -> Result<Linear> {
        let w = self.qt(&format!("{name}.weight"))?;
        let dims = w.shape().dims().to_vec();
        if dims != [out_dim, in_dim] {
            return Err(Error::Metadata(format!(
                "`{name}.weight` is {dims:?}, expected [{out_dim}, {in_dim}]"
            )));
        }
        let bias = self.opt_f32(&format!("{name}.bias"), out_dim)?;
        Linear::new(Arc::new(w), bias)
    }
}

impl Decoder {
    pub fn from_gguf(gguf: &mut Gguf) -> Result<Self> {
        let cfg = Config::from_metadata(&gguf.metadata)?;
        let mut ld = Loader(gguf);
        let (d, hd) = (cfg.n_embd, cfg.head_dim);
        let q_dim = cfg.n_head * hd;
        let kv_dim = cfg.n_kv_head * hd;
        let embed = Arc::new(ld.qt("token_embd.weight")?);
        let edims = embed.shape().dims().to_vec();
        if edims != [cfg.vocab_size, d] {
            return Err(Error::Metadata(format!(
                "token_embd.weight is {edims:?}, expected [{}, {d}]",
                cfg.vocab_size
            )));
        }
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let p = |s: &str| format!("blk.{i}.{s}");
            let qkv = if ld.has(&p("attn_qkv.weight")) {
                Qkv::Fused(ld.linear(&p("attn_qkv"), q_dim + 2 * kv_dim, d)?)
            } else {
                Qkv::Split {
                    q: ld.linear(&p("attn_q"), q_dim, d)?,
                    k: ld.linear(&p("attn_k"), kv_dim, d)?,
                    v: ld.linear(&p("attn_v"), kv_dim, d)?,
                }
            };
            let ffn = if ld.has(&p("ffn_gate.weight")) {
                Ffn::Gated {
                    gate: ld.linear(&p("ffn_gate"), cfg.n_ff, d)?,
                    up: ld.linear(&p("ffn_up"), cfg.n_ff, d)?,
                }
            } else {
                Ffn::FusedGateUp(ld.linear(&p("ffn_up"), 2 * cfg.n_ff, d)?)
            };
            let local = cfg.layer_is_local[i];
            layers.push(Layer {
                attn_norm: ld.f32(&p("attn_norm.weight"), d)?,
                qkv,
                q_norm: ld.opt_f32(&p("attn_q_norm.weight"), hd)?,
                k_norm: ld.opt_f32(&p("attn_k_norm.weight"), hd)?,
                o: ld.linear(&p("attn_output"), d, q_dim)?,
                post_attn_norm: ld.opt_f32(&p("post_attention_norm.weight"), d)?,
                ffn_norm: ld.f32(&p("ffn_norm.weight"), d)?,
                ffn,
                down: ld.linear(&p("ffn_down"), d, cfg.n_ff)?,
                post_ffn_norm: ld.opt_f32(&p("post_ffw_norm.weight"), d)?,
                inv_freq: cfg.inv_freq(local),
                window: if local { cfg.sliding_window } else { None },
            });
        }
        let output_norm = ld.f32("output_norm.weight", d)?;
        // Tied output: the embedding table doubles as the output projection, one copy in memory.
        let output = if ld.has("output.weight") {
            ld.linear("output", cfg.vocab_size, d)?
        } else {
            Linear::new(embed.clone(), None)?
        };
        Ok(Decoder {
            cfg,
            embed,
            layers,
            output_norm,
            output,
        })
    }

    /// Checks the fast matrix kernels against their scalar references on this model's own
    /// weights (layer 0 and the output projection): `(tensor, block type, worst error)`.
    pub fn kernel_self_test(&self) -> Vec<(String, String, f64)> {
        let l = &self.layers[0];
        let mut named: Vec<(&str, &Linear)> =
            vec![("attn_output", &l.o), ("ffn_down", &l.down), ("output", &self.output)];
        match &l.qkv {
            Qkv::Split { q, k, v } => named.extend([("attn_q", q), ("attn_k", k), ("attn_v", v)]),
            Qkv::Fused(w) => named.push(("attn_qkv", w)),
        }
        match &l.ffn {
            Ffn::Gated { gate, up } => named.extend([("ffn_gate", gate), ("ffn_up", up)]),
            Ffn::FusedGateUp(w) => named.push(("ffn_up", w)),
        }
        let mut out = vec![];
        for (name, lin) in named {
            let rows = 3;
            let x: Vec<f32> = (0..rows * lin.in_dim)
                .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 2.0)
                .collect();
            if let Some((dtype, err)) = lin.kernel_self_test(&x, rows) {
                out.push((name.to_string(), dtype, err));
            }
        }
        out
    }

    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.cfg.n_layer, self.cfg.n_kv_head * self.cfg.head_dim)
    }

    /// Runs `tokens` at the positions following the cache and appends them to it.
    /// Returns logits for the last token, or for every token when `all_logits` is set.
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache, all_logits: bool) -> Result<Vec<f32>> {
        let pos0 = cache.len();
        let result = self.forward_inner(tokens, cache, all_logits);
        if result.is_err() {
            // Never leave half a step in the cache: the next request would read garbage.
            cache.rollback_layers(pos0);
        }
        result
    }

    fn forward_inner(&self, tokens: &[u32], cache: &mut KvCache, all_logits: bool) -> Result<Vec<f32>> {
        let cfg = &self.cfg;
        let n = tokens.len();
        if n == 0 {
            return Err(Error::InvalidRequest("no tokens to run".into()));
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= cfg.vocab_size) {
            return Err(Error::InvalidRequest(format!(
                "token id {bad} is outside the vocabulary of {}",
                cfg.vocab_size
            )));
        }
        let pos0 = cache.len();
        let (d, hd) = (cfg.n_embd, cfg.head_dim);
        let (q_dim, kv_dim) = (cfg.n_head * hd, cfg.n_kv_head * hd);
        let mut h = cpu::embedding_rows(&self.embed, tokens)?;
        if let Some(s) = cfg.embed_scale {
            h.iter_mut().for_each(|v| *v *= s);
        }
        for (li, l) in self.layers.iter().enumerate() {
            let mut x = h.clone();
            cpu::rms_norm(&mut x, &l.attn_norm, cfg.rms_eps);
            let (mut q, mut k, v) = match &l.qkv {
                Qkv::Split { q, k, v } => (q.forward(&x, n)?, k.forward(&x, n)?, v.forward(&x, n)?),
                Qkv::Fused(w) => {
                    let y = w.forward(&x, n)?;
                    let (mut q, mut k, mut v) = (
                        Vec::with_capacity(n * q_dim),
                        Vec::with_capacity(n * kv_dim),
                        Vec::with_capacity(n * kv_dim),
                    );
                    for row in y.chunks_exact(q_dim + 2 * kv_dim) {
                        q.extend_from_slice(&row[..q_dim]);
                        k.extend_from_slice(&row[q_dim..q_dim + kv_dim]);
                        v.extend_from_slice(&row[q_dim + kv_dim..]);
                    }
                    (q, k, v)
                }
            };
            if let Some(w) = &l.q_norm {
                cpu::rms_norm(&mut q, w, cfg.rms_eps);
            }
            if let Some(w) = &l.k_norm {
                cpu::rms_norm(&mut k, w, cfg.rms_eps);
            }
            cpu::rope(&mut q, cfg.n_head, hd, pos0, &l.inv_freq, cfg.rope_style);
            cpu::rope(&mut k, cfg.n_kv_head, hd, pos0, &l.inv_freq, cfg.rope_style);
            let (kc, vc) = &mut cache.layers[li];
            kc.extend(k.iter().map(|&x| half::f16::from_f32(x)));
            vc.extend(v.iter().map(|&x| half::f16::from_f32(x)));
            let shape = AttentionShape {
                n_head: cfg.n_head,
                n_kv_head: cfg.n_kv_head,
                head_dim: hd,
                scale: cfg.attn_scale,
                softcap: cfg.attn_softcap,
                window: l.window,
            };
            let a = cpu::attention(&q, kc, vc, pos0, &shape);
            let mut a = l.o.forward(&a, n)?;
            if let Some(w) = &l.post_attn_norm {
                cpu::rms_norm(&mut a, w, cfg.rms_eps);
            }
            cpu::add_in_place(&mut h, &a);

            let mut x = h.clone();
            cpu::rms_norm(&mut x, &l.ffn_norm, cfg.rms_eps);
            let act = match cfg.activation {
                Activation::Silu => cpu::silu,
                Activation::GeluTanh => cpu::gelu_tanh,
            };
            let gated = match &l.ffn {
                Ffn::Gated { gate, up } => {
                    let mut g = gate.forward(&x, n)?;
                    let u = up.forward(&x, n)?;
                    for (g, u) in g.iter_mut().zip(&u) {
                        *g = act(*g) * u;
                    }
                    g
                }
                Ffn::FusedGateUp(w) => {
                    let y = w.forward(&x, n)?;
                    let mut g = Vec::with_capacity(n * cfg.n_ff);
                    for row in y.chunks_exact(2 * cfg.n_ff) {
                        let (gate, up) = row.split_at(cfg.n_ff);
                        g.extend(gate.iter().zip(up).map(|(g, u)| act(*g) * u));
                    }
                    g
                }
            };
            let mut f = l.down.forward(&gated, n)?;
            if let Some(w) = &l.post_ffn_norm {
                cpu::rms_norm(&mut f, w, cfg.rms_eps);
            }
            cpu::add_in_place(&mut h, &f);
        }
        cache.push_tokens(tokens);
        let rows = if all_logits { n } else { 1 };
        let mut x = h[(n - rows) * d..].to_vec();
        cpu::rms_norm(&mut x, &self.output_norm, cfg.rms_eps);
        let mut logits = self.output.forward(&x, rows)?;
        if let Some(c) = cfg.final_softcap {
            cpu::softcap(&mut logits, c);
        }
        Ok(logits)
    }
}
