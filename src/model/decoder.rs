//! The one forward pass for every supported family (Llama, Qwen 2/3, Gemma 3, Phi-3),
//! driven by [`Config`]: optional QK-norm, post-norms, sliding windows and soft-capping
//! are switches, not copies of the model code.

use super::config::Config;
use super::kv_cache::KvCache;
use crate::backend::cpu::{self, Cpu, Linear, Rotation};
use crate::backend::llama_cpp::AngleRecurrence;
use crate::backend::{AttentionShape, Backend};
use crate::error::{Error, Result};
use crate::gguf::Gguf;
use candle_core::quantized::QTensor;
use std::sync::Arc;

enum Qkv<M> {
    Split {
        q: M,
        k: M,
        v: M,
    },
    /// Phi-3 stores Q, K and V as one matrix.
    Fused(M),
}

enum Ffn<M> {
    Gated {
        gate: M,
        up: M,
    },
    /// Phi-3 stores gate and up as one matrix (gate first).
    FusedGateUp(M),
}

struct Layer<B: Backend> {
    attn_norm: B::Vector,
    qkv: Qkv<B::Matrix>,
    q_norm: Option<B::Vector>,
    k_norm: Option<B::Vector>,
    o: B::Matrix,
    post_attn_norm: Option<B::Vector>,
    ffn_norm: B::Vector,
    ffn: Ffn<B::Matrix>,
    down: B::Matrix,
    post_ffn_norm: Option<B::Vector>,
    rotation: Rotation,
    local: bool,
    window: Option<usize>,
}

/// Per-dimension divisors of RoPE's frequencies, from tensors (one copy for all layers):
/// Llama 3.1/3.2's `rope_freqs`, or Phi-3's long-context pair, of which llama.cpp takes the
/// long one only when the context exceeds the original one.
struct RopeFactors {
    freqs: Option<Vec<f32>>,
    short: Option<Vec<f32>>,
    long: Option<Vec<f32>>,
}

impl RopeFactors {
    fn for_context(&self, cfg: &Config, context: usize) -> Option<&[f32]> {
        if let Some(f) = &self.freqs {
            return Some(f);
        }
        let original = cfg.rope_orig_context.unwrap_or(cfg.context_length);
        if context > original {
            self.long.as_deref()
        } else {
            self.short.as_deref()
        }
    }
}

/// The context an engine gets unless asked otherwise: the trained one, at most this.
pub const DEFAULT_CONTEXT: usize = 4096;

fn layer_rotation(cfg: &Config, local: bool, factors: Option<&[f32]>) -> Rotation {
    let mut f = cfg.inv_freq(local);
    if let Some(factors) = factors {
        for (f, d) in f.iter_mut().zip(factors) {
            *f /= d;
        }
    }
    let base = if local { cfg.rope_base_local } else { cfg.rope_base };
    let scale = if local { 1.0 } else { cfg.rope_scale };
    Rotation {
        inv_freq: f,
        // llama.cpp folds no YaRN ramp or magnitude into this recurrence.
        recurrence: (cfg.yarn.is_none() && cfg.rope_attn_factor == 1.0).then(|| AngleRecurrence {
            theta_scale: base.powf(-2.0 / cfg.rope_dim as f32),
            freq_scale: 1.0 / scale,
            factors: factors.map(<[f32]>::to_vec),
        }),
    }
}

/// The model, its weights held by backend `B` (the CPU unless said otherwise).
pub struct Decoder<B: Backend = Cpu> {
    pub cfg: Config,
    pub backend: B,
    embed: B::Table,
    layers: Vec<Layer<B>>,
    output_norm: B::Vector,
    output: B::Matrix,
    rope_factors: RopeFactors,
}

struct Loader<'a, B: Backend>(&'a mut Gguf, &'a B);

impl<B: Backend> Loader<'_, B> {
    /// Whether the file has the tensor (also when the backend took it while streaming).
    fn has(&self, name: &str) -> bool {
        self.0.infos.iter().any(|t| t.name == name)
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
    fn vector(&mut self, name: &str, len: usize) -> Result<B::Vector> {
        let v = self.f32(name, len)?;
        self.1.vector(v)
    }
    fn opt_vector(&mut self, name: &str, len: usize) -> Result<Option<B::Vector>> {
        if self.has(name) {
            self.vector(name, len).map(Some)
        } else {
            Ok(None)
        }
    }
    fn opt_f32(&mut self, name: &str, len: usize) -> Result<Option<Vec<f32>>> {
        if self.has(name) {
            self.f32(name, len).map(Some)
        } else {
            Ok(None)
        }
    }
    /// RoPE divisors: finite and positive, or the rotation would be garbage.
    fn opt_factors(&mut self, name: &str, len: usize) -> Result<Option<Vec<f32>>> {
        let f = self.opt_f32(name, len)?;
        if let Some(bad) = f.iter().flatten().find(|v| !(v.is_finite() && **v > 0.0)) {
            return Err(Error::Metadata(format!("`{name}` holds {bad}")));
        }
        Ok(f)
    }
    fn linear(&mut self, name: &str, out_dim: usize, in_dim: usize) -> Result<B::Matrix> {
        let bias = self.opt_f32(&format!("{name}.bias"), out_dim)?;
        let weight = format!("{name}.weight");
        if let Some((m, dims)) = self.1.preloaded(&mut self.0.streamed, &weight, bias.clone())? {
            check_dims(&weight, &dims, [out_dim, in_dim])?;
            return Ok(m);
        }
        let w = self.qt(&weight)?;
        check_dims(&weight, w.shape().dims(), [out_dim, in_dim])?;
        self.1.matrix(Arc::new(w), bias)
    }
}

fn check_dims(name: &str, dims: &[usize], want: [usize; 2]) -> Result<()> {
    if dims != want {
        return Err(Error::Metadata(format!("`{name}` is {dims:?}, expected {want:?}")));
    }
    Ok(())
}

impl Decoder<Cpu> {
    pub fn from_gguf(gguf: &mut Gguf) -> Result<Self> {
        Self::load(gguf, Cpu)
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
            // Seventeen rows: prefill's four-row kernels (the SIMD128 build's k-quant quads
            // from 16 rows) with a one-row tail, then the one-row kernels, all run.
            let rows = 17;
            let x: Vec<f32> = (0..rows * lin.in_dim)
                .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 2.0)
                .collect();
            if let Some((dtype, err)) = lin.kernel_self_test(&x, rows) {
                out.push((name.to_string(), dtype, err));
            }
        }
        out
    }
}

impl<B: Backend> Decoder<B> {
    /// Reads the weights into `backend` (tensor by tensor: each is dropped from the file's
    /// index once the backend holds it).
    pub fn load(gguf: &mut Gguf, backend: B) -> Result<Self> {
        let cfg = Config::from_metadata(&gguf.metadata)?;
        let mut ld = Loader(gguf, &backend);
        let (d, hd) = (cfg.n_embd, cfg.head_dim);
        let q_dim = cfg.n_head * hd;
        let kv_dim = cfg.n_kv_head * hd;
        let embed = match backend.preloaded_table(&mut ld.0.streamed, "token_embd.weight")? {
            Some((t, dims)) => {
                check_dims("token_embd.weight", &dims, [cfg.vocab_size, d])?;
                t
            }
            None => {
                let packed = ld.0.packed.iter().any(|n| n == "token_embd.weight");
                let t = ld.qt("token_embd.weight")?;
                check_dims("token_embd.weight", t.shape().dims(), [cfg.vocab_size, d])?;
                if packed {
                    backend.packed_table(Arc::new(t))?
                } else {
                    backend.table(Arc::new(t))?
                }
            }
        };
        let rope_factors = RopeFactors {
            freqs: ld.opt_factors("rope_freqs.weight", cfg.rope_dim / 2)?,
            short: ld.opt_factors("rope_factors_short.weight", cfg.rope_dim / 2)?,
            long: ld.opt_factors("rope_factors_long.weight", cfg.rope_dim / 2)?,
        };
        let context = cfg.context_length.min(DEFAULT_CONTEXT);
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
                attn_norm: ld.vector(&p("attn_norm.weight"), d)?,
                qkv,
                q_norm: ld.opt_vector(&p("attn_q_norm.weight"), hd)?,
                k_norm: ld.opt_vector(&p("attn_k_norm.weight"), hd)?,
                o: ld.linear(&p("attn_output"), d, q_dim)?,
                post_attn_norm: ld.opt_vector(&p("post_attention_norm.weight"), d)?,
                ffn_norm: ld.vector(&p("ffn_norm.weight"), d)?,
                ffn,
                down: ld.linear(&p("ffn_down"), d, cfg.n_ff)?,
                post_ffn_norm: ld.opt_vector(&p("post_ffw_norm.weight"), d)?,
                rotation: layer_rotation(&cfg, local, rope_factors.for_context(&cfg, context)),
                local,
                window: if local { cfg.sliding_window } else { None },
            });
        }
        let output_norm = ld.vector("output_norm.weight", d)?;
        // Tied output: the embedding table doubles as the output projection, one copy in memory.
        let output = if ld.has("output.weight") {
            ld.linear("output", cfg.vocab_size, d)?
        } else {
            backend.tied_output(&embed)?
        };
        Ok(Decoder {
            cfg,
            backend,
            embed,
            layers,
            output_norm,
            output,
            rope_factors,
        })
    }

    /// Sets RoPE for a context of `context` tokens: Phi-3's long-context models rotate with
    /// other factors past their original context.
    pub fn fit_context(&mut self, context: usize) {
        let factors = self.rope_factors.for_context(&self.cfg, context);
        for l in &mut self.layers {
            l.rotation = layer_rotation(&self.cfg, l.local, factors);
        }
    }

    pub fn new_cache(&self) -> KvCache<B> {
        KvCache::new(&self.backend, self.cfg.n_layer, self.cfg.n_kv_head * self.cfg.head_dim)
    }

    /// Runs `tokens` at the positions following the cache and appends them to it.
    /// Returns logits for the last token, or for every token when `all_logits` is set.
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache<B>, all_logits: bool) -> Result<Vec<f32>> {
        let logits = self.forward_lazy(tokens, cache, all_logits)?;
        self.backend.read(logits)
    }

    /// [`Decoder::forward`] for callers that must not block (the browser's GPU).
    pub async fn forward_async(&self, tokens: &[u32], cache: &mut KvCache<B>, all_logits: bool) -> Result<Vec<f32>> {
        let logits = self.forward_lazy(tokens, cache, all_logits)?;
        self.backend.read_awaited(logits).await
    }

    /// [`Decoder::forward`] without reading the logits back: on the GPU they stay in a
    /// buffer until the caller reads them (the browser must await that).
    pub fn forward_lazy(&self, tokens: &[u32], cache: &mut KvCache<B>, all_logits: bool) -> Result<B::Act> {
        let pos0 = cache.len();
        let result = self.forward_inner(tokens, cache, all_logits);
        if result.is_err() {
            // Never leave half a step in the cache: the next request would read garbage.
            cache.rollback_layers(&self.backend, pos0);
        }
        result
    }

    fn forward_inner(&self, tokens: &[u32], cache: &mut KvCache<B>, all_logits: bool) -> Result<B::Act> {
        let cfg = &self.cfg;
        let b = &self.backend;
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
        let mut h = b.embed(&self.embed, tokens, cfg.embed_scale)?;
        for (li, l) in self.layers.iter().enumerate() {
            let x = b.rms_norm(&h, &l.attn_norm, cfg.rms_eps)?;
            let [mut q, mut k, v] = match &l.qkv {
                Qkv::Split { q, k, v } => [b.linear(q, &x, n)?, b.linear(k, &x, n)?, b.linear(v, &x, n)?],
                Qkv::Fused(w) => b.split(&b.linear(w, &x, n)?, n, [q_dim, kv_dim, kv_dim])?,
            };
            if let Some(w) = &l.q_norm {
                b.rms_norm_in_place(&mut q, w, cfg.rms_eps)?;
            }
            if let Some(w) = &l.k_norm {
                b.rms_norm_in_place(&mut k, w, cfg.rms_eps)?;
            }
            if cfg.layer_has_rope[li] {
                b.rope(&mut q, n, cfg.n_head, hd, pos0, &l.rotation, cfg.rope_style)?;
                b.rope(&mut k, n, cfg.n_kv_head, hd, pos0, &l.rotation, cfg.rope_style)?;
            }
            // Gemma's queries are scaled before they meet the keys (llama.cpp's graph, and
            // the f16 rounding of the query then sees the scaled values), others' scores.
            let mut scale = cfg.attn_scale;
            if cfg.arch.starts_with("gemma") {
                b.scale(&mut q, scale)?;
                scale = 1.0;
            }
            let shape = AttentionShape {
                n_head: cfg.n_head,
                n_kv_head: cfg.n_kv_head,
                head_dim: hd,
                scale,
                softcap: cfg.attn_softcap,
                window: l.window,
            };
            let a = b.attention(&q, &k, &v, &mut cache.layers[li], pos0, n, &shape)?;
            let mut a = b.linear(&l.o, &a, n)?;
            if let Some(w) = &l.post_attn_norm {
                b.rms_norm_in_place(&mut a, w, cfg.rms_eps)?;
            }
            if let Some(s) = cfg.residual_scale {
                b.scale(&mut a, s)?;
            }
            b.add(&mut h, &a)?;

            let x = b.rms_norm(&h, &l.ffn_norm, cfg.rms_eps)?;
            let gated = match &l.ffn {
                Ffn::Gated { gate, up } => {
                    let g = b.linear(gate, &x, n)?;
                    let u = b.linear(up, &x, n)?;
                    b.gate(g, &u, cfg.activation)?
                }
                Ffn::FusedGateUp(w) => b.gate_fused(&b.linear(w, &x, n)?, n, cfg.n_ff, cfg.activation)?,
            };
            let mut f = b.linear(&l.down, &gated, n)?;
            if let Some(w) = &l.post_ffn_norm {
                b.rms_norm_in_place(&mut f, w, cfg.rms_eps)?;
            }
            if let Some(s) = cfg.residual_scale {
                b.scale(&mut f, s)?;
            }
            b.add(&mut h, &f)?;
        }
        cache.push_tokens(tokens);
        let rows = if all_logits { n } else { 1 };
        let x = b.last_rows(&h, n, rows, d)?;
        let x = b.rms_norm(&x, &self.output_norm, cfg.rms_eps)?;
        let mut logits = b.linear(&self.output, &x, rows)?;
        if let Some(c) = cfg.final_softcap {
            b.softcap(&mut logits, c)?;
        }
        if let Some(s) = cfg.logit_scale {
            b.scale(&mut logits, 1.0 / s)?;
        }
        Ok(logits)
    }
}
