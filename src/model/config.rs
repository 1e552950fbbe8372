//! Model hyper-parameters read from GGUF metadata. Families differ only here.

use crate::backend::cpu::RopeStyle;
use crate::error::{Error, Result};
use crate::gguf::Metadata;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    Silu,
    GeluTanh,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub arch: String,
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub n_ff: usize,
    pub vocab_size: usize,
    pub context_length: usize,
    pub rms_eps: f32,
    pub rope_style: RopeStyle,
    pub rope_dim: usize,
    pub rope_base: f32,
    /// Linear RoPE scaling factor (positions are divided by it).
    pub rope_scale: f32,
    /// Multiplies RoPE's cos and sin (`rope.scaling.attn_factor`, Phi-3's long-context
    /// models): folded into `attn_scale` as its square, since only Q·K sees it.
    pub rope_attn_factor: f32,
    /// The context the model was trained for before its RoPE was stretched: past it,
    /// Phi-3's long factors apply, within it the short ones (as llama.cpp chooses).
    pub rope_orig_context: Option<usize>,
    /// YaRN's stretch of the RoPE frequencies, where the file asks for it.
    pub yarn: Option<Yarn>,
    /// Base for sliding-window layers (Gemma 3 trains them with 10 000).
    pub rope_base_local: f32,
    pub sliding_window: Option<usize>,
    /// Per layer: does it use the sliding window (and the local RoPE base)?
    pub layer_is_local: Vec<bool>,
    /// Per layer: does it rotate Q and K? SmolLM3 leaves every fourth layer without
    /// positions (NoPE), as llama.cpp fixes it for the architecture (no metadata key says so).
    pub layer_has_rope: Vec<bool>,
    pub activation: Activation,
    /// Gemma multiplies token embeddings by sqrt(n_embd).
    pub embed_scale: Option<f32>,
    pub attn_scale: f32,
    pub attn_softcap: Option<f32>,
    pub final_softcap: Option<f32>,
    /// Granite multiplies each attention and FFN output by this before the residual add.
    pub residual_scale: Option<f32>,
    /// Granite divides the logits by this.
    pub logit_scale: Option<f32>,
}

/// YaRN (Peng et al., 2023) as llama.cpp applies it, statically: each RoPE frequency is
/// interpolated (divided by `factor`), kept (extrapolated), or mixed between the two by a ramp
/// over the dimensions whose wavelengths fall between `beta_fast` and `beta_slow` rotations
/// of the original context; Q·K then grows by (1 + 0.1 ln factor)².
#[derive(Debug, Clone, Copy)]
pub struct Yarn {
    pub factor: f32,
    pub original_context: usize,
    pub beta_fast: f32,
    pub beta_slow: f32,
    /// How far the ramp mixes in the extrapolated frequencies (1: fully).
    pub ext_factor: f32,
}

impl Yarn {
    /// The dimension (pair) range over which the ramp falls, as llama.cpp rounds it.
    fn correction_dims(&self, rope_dim: usize, base: f32) -> (f32, f32) {
        let n = rope_dim as f32;
        let dim = |rotations: f32| {
            n * (self.original_context as f32 / (rotations * 2.0 * std::f32::consts::PI)).ln() / (2.0 * base.ln())
        };
        (
            dim(self.beta_fast).floor().max(0.0),
            dim(self.beta_slow).ceil().min(n - 1.0),
        )
    }

    /// The multiplier of frequency `i` of `rope_dim / 2`.
    fn stretch(&self, i: usize, (low, high): (f32, f32)) -> f32 {
        let y = (i as f32 - low) / (high - low).max(0.001);
        let mix = (1.0 - y.clamp(0.0, 1.0)) * self.ext_factor;
        (1.0 - mix) / self.factor + mix
    }

    /// How much the rotation scales Q and K each (llama.cpp's `mscale`).
    pub fn magnitude(&self) -> f32 {
        if self.ext_factor != 0.0 {
            1.0 + 0.1 * self.factor.ln()
        } else {
            1.0
        }
    }
}

/// Architectures whose tensors and metadata the decoder understands.
pub const SUPPORTED: &[&str] = &[
    "llama", "granite", "smollm3", "qwen2", "qwen3", "gemma2", "gemma3", "phi3",
];

impl Config {
    pub fn from_metadata(meta: &Metadata) -> Result<Self> {
        let arch = meta
            .str("general.architecture")?
            .ok_or_else(|| Error::Metadata("missing `general.architecture`".into()))?
            .to_string();
        if !SUPPORTED.contains(&arch.as_str()) {
            return Err(Error::UnsupportedArchitecture(arch));
        }
        let k = |s: &str| format!("{arch}.{s}");
        let n_layer = meta.required_usize(&k("block_count"))?;
        let n_embd = meta.required_usize(&k("embedding_length"))?;
        let n_head = meta.required_usize(&k("attention.head_count"))?;
        let n_kv_head = meta.usize(&k("attention.head_count_kv"))?.unwrap_or(n_head);
        let n_ff = meta.required_usize(&k("feed_forward_length"))?;
        if n_layer == 0 || n_layer > 1024 || n_head == 0 || n_kv_head == 0 || n_head % n_kv_head != 0 || n_embd == 0 {
            return Err(Error::Metadata(format!(
                "implausible shape: {n_layer} layers, {n_head} heads, {n_kv_head} KV heads, width {n_embd}"
            )));
        }
        let head_dim = meta.usize(&k("attention.key_length"))?.unwrap_or(n_embd / n_head);
        let rope_dim = meta.usize(&k("rope.dimension_count"))?.unwrap_or(head_dim);
        if rope_dim > head_dim || rope_dim % 2 != 0 {
            return Err(Error::Metadata(format!(
                "rope dimension {rope_dim} for head size {head_dim}"
            )));
        }
        let context_length = meta.usize(&k("context_length"))?.unwrap_or(2048);
        let rms_eps = meta.f64(&k("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-6) as f32;
        let rope_base = meta.f64(&k("rope.freq_base"))?.unwrap_or(10_000.0) as f32;
        let scaling = meta.str(&k("rope.scaling.type"))?;
        let rope_scale = match scaling {
            Some("linear") | None => meta.f64(&k("rope.scaling.factor"))?.unwrap_or(1.0) as f32,
            // Per-dimension factors come as tensors (`rope_factors_*`, `rope_freqs`), read by
            // the decoder; the type names them only.
            Some("longrope" | "su" | "llama3" | "yarn") => 1.0,
            Some(other) => return Err(Error::Metadata(format!("RoPE scaling `{other}` is not supported yet"))),
        };
        let rope_attn_factor = meta.f64(&k("rope.scaling.attn_factor"))?.unwrap_or(1.0) as f32;
        if !(rope_attn_factor.is_finite() && rope_attn_factor > 0.0) {
            return Err(Error::Metadata(format!("RoPE attention factor {rope_attn_factor}")));
        }
        if rope_attn_factor != 1.0 && rope_dim != head_dim {
            // The factor scales the rotated dimensions only; folding it into the attention
            // scale would be wrong for a partial rotation.
            return Err(Error::Metadata(
                "a RoPE attention factor with a partial rotation is not supported".into(),
            ));
        }
        let rope_orig_context = meta.usize(&k("rope.scaling.original_context_length"))?;
        let yarn = match scaling {
            Some("yarn") => {
                let f = |key: &str, default: f64| -> Result<f32> { Ok(meta.f64(&k(key))?.unwrap_or(default) as f32) };
                let yarn = Yarn {
                    factor: f("rope.scaling.factor", 1.0)?,
                    original_context: rope_orig_context
                        .ok_or_else(|| Error::Metadata("YaRN without `rope.scaling.original_context_length`".into()))?,
                    beta_fast: f("rope.scaling.yarn_beta_fast", 32.0)?,
                    beta_slow: f("rope.scaling.yarn_beta_slow", 1.0)?,
                    ext_factor: f("rope.scaling.yarn_ext_factor", 1.0)?,
                };
                let sane = |v: f32| v.is_finite() && v > 0.0;
                if !(sane(yarn.factor) && sane(yarn.beta_fast) && sane(yarn.beta_slow) && yarn.ext_factor.is_finite())
                    || yarn.original_context == 0
                {
                    return Err(Error::Metadata(format!("YaRN parameters {yarn:?}")));
                }
                if rope_dim != head_dim {
                    return Err(Error::Metadata("YaRN with a partial rotation is not supported".into()));
                }
                Some(yarn)
            }
            _ => None,
        };
        let vocab_size = meta
            .array("tokenizer.ggml.tokens")?
            .map(|a| a.len())
            .or(meta.usize(&k("vocab_size"))?)
            .ok_or_else(|| Error::Metadata("unknown vocabulary size".into()))?;
        // Gemma 2 is Gemma 3 without QK-norm (its norms are optional tensors), with soft-capped
        // attention and output logits (read below for every family), every other layer local
        // and one RoPE base for all layers.
        let gemma = arch == "gemma3" || arch == "gemma2";
        let sliding_window = if gemma {
            meta.usize(&k("attention.sliding_window"))?
        } else {
            None
        };
        // Gemma 3: five local (sliding-window) layers, then one global; Gemma 2: one local, one
        // global; unless the file says otherwise.
        let default_pattern = if arch == "gemma2" { 2 } else { 6 };
        let pattern = meta
            .usize(&k("attention.sliding_window_pattern"))?
            .unwrap_or(default_pattern)
            .max(1);
        let layer_is_local = (0..n_layer)
            .map(|i| sliding_window.is_some() && i % pattern < pattern - 1)
            .collect();
        // Gemma 2 and 3 27B scale queries by 1/√(width / heads) rather than 1/√(head size)
        // (their `query_pre_attn_scalar`); GGUF has no key for it, so llama.cpp tells the
        // 27B models by their layer count, as here.
        let query_scale_dim = match (arch.as_str(), n_layer) {
            ("gemma2", 46) | ("gemma3", 62) => (n_embd / n_head) as f32,
            _ => head_dim as f32,
        };
        // Granite is Llama (its converter interleaves Q and K as Llama's does) with four
        // scalars: embeddings, attention scores, branch outputs and logits each scaled.
        let granite = arch == "granite";
        let scalar = |key: &str| -> Result<Option<f32>> {
            Ok(match granite {
                true => meta.f64(&k(key))?.map(|v| v as f32).filter(|v| *v != 0.0),
                false => None,
            })
        };
        let [embedding_scale, residual_scale, attention_scale, logit_scale] =
            ["embedding_scale", "residual_scale", "attention.scale", "logit_scale"].map(|key| match scalar(key) {
                Ok(Some(v)) if !v.is_finite() => Err(Error::Metadata(format!("{arch}.{key} is not a finite number"))),
                other => other,
            });
        let (embedding_scale, residual_scale, attention_scale, logit_scale) =
            (embedding_scale?, residual_scale?, attention_scale?, logit_scale?);
        let layer_has_rope = (0..n_layer).map(|i| arch != "smollm3" || (i + 1) % 4 != 0).collect();
        let rope_style = if arch == "llama" || granite || arch == "smollm3" {
            RopeStyle::Interleaved
        } else {
            RopeStyle::Halves
        };
        // RoPE's scaling of Q and K each, folded into the attention scale (only Q·K sees it).
        let rope_magnitude = rope_attn_factor * yarn.map_or(1.0, |y| y.magnitude());
        Ok(Config {
            n_layer,
            n_embd,
            n_head,
            n_kv_head,
            head_dim,
            n_ff,
            vocab_size,
            context_length,
            rms_eps,
            rope_style,
            rope_dim,
            rope_base,
            rope_scale,
            rope_attn_factor,
            rope_orig_context,
            yarn,
            rope_base_local: if arch == "gemma3" { 10_000.0 } else { rope_base },
            sliding_window,
            layer_is_local,
            layer_has_rope,
            activation: if gemma { Activation::GeluTanh } else { Activation::Silu },
            embed_scale: if gemma {
                Some((n_embd as f32).sqrt())
            } else {
                embedding_scale
            },
            attn_scale: attention_scale.unwrap_or(rope_magnitude * rope_magnitude / query_scale_dim.sqrt()),
            attn_softcap: meta.f64(&k("attn_logit_softcapping"))?.map(|v| v as f32),
            final_softcap: meta.f64(&k("final_logit_softcapping"))?.map(|v| v as f32),
            residual_scale,
            logit_scale,
            arch,
        })
    }

    /// Inverse RoPE frequencies for a layer (local layers of Gemma use their own base).
    pub fn inv_freq(&self, local: bool) -> Vec<f32> {
        let base = if local { self.rope_base_local } else { self.rope_base };
        let scale = if local { 1.0 } else { self.rope_scale };
        let yarn = self.yarn.map(|y| (y, y.correction_dims(self.rope_dim, base)));
        (0..self.rope_dim / 2)
            .map(|i| {
                let f = base.powf(-2.0 * i as f32 / self.rope_dim as f32) / scale;
                match yarn {
                    Some((y, dims)) => f * y.stretch(i, dims),
                    None => f,
                }
            })
            .collect()
    }
}
