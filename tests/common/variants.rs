//! Models of the other families the engine runs (Qwen 2, Qwen 3, Phi-3, Llama 3's RoPE
//! factors), derived from SmolLM2's real weights: no such model is reachable from these
//! machines, and llama.cpp (scripts/make_fixtures.py) runs the same files as the reference.
//!
//! Every variant keeps SmolLM2's quantized blocks and tokenizer and changes what its family
//! changes: tensor names and layout, extra tensors, metadata. The extra values are fixed
//! formulas (no random generator), so the script and the tests make the same files.

use candle_core::quantized::{ggml_file::qtensor_from_ggml, gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

pub const VARIANTS: &[&str] = &[
    "qwen2",
    "qwen3",
    "phi3",
    "llama-rope-freqs",
    "granite",
    "smollm3",
    "llama-yarn",
];

/// Gemma 2's variant scales Gemma 3's Q and K weights by this (a power of two: exact).
const GEMMA2_QK_SCALE: f64 = 0.125;

/// A fixed, varied sequence in [lo, hi] (a multiplicative hash, not a random generator).
fn pattern(n: usize, salt: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let h = ((i + 1) * 2654435761 + salt * 40503) % 1000;
            lo + (hi - lo) * h as f32 / 999.0
        })
        .collect()
}

fn f32_tensor(values: Vec<f32>) -> QTensor {
    let n = values.len();
    let t = Tensor::from_vec(values, n, &Device::Cpu).expect("tensor");
    QTensor::quantize(&t, GgmlDType::F32).expect("f32 tensor")
}

fn raw(t: &QTensor) -> Vec<u8> {
    t.data().expect("tensor bytes").into_owned()
}

fn from_raw(dtype: GgmlDType, bytes: &[u8], dims: Vec<usize>) -> QTensor {
    qtensor_from_ggml(dtype, bytes, dims, &Device::Cpu).expect("tensor from bytes")
}

/// llama.cpp's converter interleaves the two halves of every Q and K head for the llama
/// architecture (its RoPE rotates adjacent pairs); the others rotate halves, so their files
/// keep the original row order. This undoes the interleave, row by row.
fn unpermute_rows(t: &QTensor, head_dim: usize) -> QTensor {
    let dims = t.shape().dims().to_vec();
    let bytes = raw(t);
    let row = bytes.len() / dims[0];
    let half = head_dim / 2;
    let mut out = Vec::with_capacity(bytes.len());
    for r in 0..dims[0] {
        let (head, i) = (r / head_dim, r % head_dim);
        let src = head * head_dim + 2 * (i % half) + i / half;
        out.extend_from_slice(&bytes[src * row..(src + 1) * row]);
    }
    from_raw(t.dtype(), &out, dims)
}

/// Stacks matrices' rows (same type and width), as Phi-3 stores Q, K, V and gate, up.
fn stack_rows(parts: &[&QTensor]) -> QTensor {
    let mut bytes = vec![];
    let mut rows = 0;
    for p in parts {
        bytes.extend(raw(p));
        rows += p.shape().dims()[0];
    }
    let width = parts[0].shape().dims()[1];
    from_raw(parts[0].dtype(), &bytes, vec![rows, width])
}

/// How to derive a variant.
#[derive(Clone, Copy, Default)]
pub struct Derive {
    /// Keep only the first layers.
    pub layers: Option<usize>,
    /// Store every tensor as F32: the families' semantics can then be compared with
    /// llama.cpp closely, without activation quantization turning the order of a sum into
    /// a flipped rounding that grows layer by layer.
    pub f32: bool,
}

/// Writes `variant` of the SmolLM2 file at `source` as GGUF bytes; the variant `"same"`
/// is the source itself (any model), as `how` asks.
pub fn derive(source: &Path, variant: &str, how: Derive) -> Vec<u8> {
    let layers = how.layers;
    let mut file = std::fs::File::open(source).expect("source model");
    let content = gguf_file::Content::read(&mut file).expect("source header");
    let keep = |name: &str| match (layers, name.strip_prefix("blk.")) {
        (Some(n), Some(rest)) => rest
            .split('.')
            .next()
            .and_then(|i| i.parse::<usize>().ok())
            .is_some_and(|i| i < n),
        _ => true,
    };
    let mut names: Vec<&String> = content.tensor_infos.keys().filter(|n| keep(n)).collect();
    names.sort_by_key(|n| content.tensor_infos[*n].offset);
    let mut tensors: HashMap<String, QTensor> = names
        .iter()
        .map(|n| {
            (
                n.to_string(),
                content.tensor(&mut file, n, &Device::Cpu).expect("tensor"),
            )
        })
        .collect();
    let source_arch = content.metadata["general.architecture"]
        .to_string()
        .expect("architecture")
        .clone();
    let get_u32 = |k: &str| {
        content.metadata[&format!("{source_arch}.{k}")]
            .to_u32()
            .expect("u32 key") as usize
    };
    let n_layer = layers.unwrap_or(get_u32("block_count"));
    let n_embd = get_u32("embedding_length");
    let head_dim = n_embd / get_u32("attention.head_count");

    let arch = match variant {
        "same" | "gemma3-window-rope" => source_arch.as_str(),
        "gemma2" => {
            assert_eq!(source_arch, "gemma3", "the Gemma 2 variant is made from Gemma 3");
            "gemma2"
        }
        "llama-rope-freqs" | "llama-yarn" => "llama",
        v => {
            assert_eq!(source_arch, "llama", "variants are made from SmolLM2");
            v
        }
    };
    let mut metadata: Vec<(String, gguf_file::Value)> = content
        .metadata
        .iter()
        .filter(|(k, _)| k.as_str() != "general.architecture")
        .map(|(k, v)| {
            (
                k.replacen(&format!("{source_arch}."), &format!("{arch}."), 1),
                v.clone(),
            )
        })
        .collect();
    metadata.push(("general.architecture".into(), gguf_file::Value::String(arch.into())));
    if layers.is_some() {
        metadata.retain(|(k, _)| *k != format!("{arch}.block_count"));
        metadata.push((format!("{arch}.block_count"), gguf_file::Value::U32(n_layer as u32)));
    }
    let mut order: Vec<String> = names.iter().map(|n| n.to_string()).collect();

    // Rows back in the original order for the families that rotate halves.
    if source_arch == "llama" && !matches!(arch, "llama" | "granite" | "smollm3") {
        for i in 0..n_layer {
            for w in ["attn_q", "attn_k"] {
                let name = format!("blk.{i}.{w}.weight");
                let t = unpermute_rows(&tensors[&name], head_dim);
                tensors.insert(name, t);
            }
        }
    }
    fn add(tensors: &mut HashMap<String, QTensor>, order: &mut Vec<String>, name: String, t: QTensor) {
        order.push(name.clone());
        tensors.insert(name, t);
    }
    match variant {
        "qwen2" => {
            // Q, K and V biases, large enough to move every attention pattern.
            for i in 0..n_layer {
                for (j, w) in ["attn_q", "attn_k", "attn_v"].iter().enumerate() {
                    let rows = tensors[&format!("blk.{i}.{w}.weight")].shape().dims()[0];
                    let b = pattern(rows, i * 3 + j, -0.5, 0.5);
                    add(&mut tensors, &mut order, format!("blk.{i}.{w}.bias"), f32_tensor(b));
                }
            }
        }
        "qwen3" => {
            // Per-head RMS norms of Q and K (QK-norm) before RoPE.
            for i in 0..n_layer {
                for (j, w) in ["attn_q_norm", "attn_k_norm"].iter().enumerate() {
                    let g = pattern(head_dim, i * 2 + j, 0.6, 1.6);
                    add(&mut tensors, &mut order, format!("blk.{i}.{w}.weight"), f32_tensor(g));
                }
            }
        }
        "phi3" => {
            for i in 0..n_layer {
                let p = |w: &str| format!("blk.{i}.{w}.weight");
                let qkv = stack_rows(&[&tensors[&p("attn_q")], &tensors[&p("attn_k")], &tensors[&p("attn_v")]]);
                let gate_up = stack_rows(&[&tensors[&p("ffn_gate")], &tensors[&p("ffn_up")]]);
                for w in ["attn_q", "attn_k", "attn_v", "ffn_gate", "ffn_up"] {
                    tensors.remove(&p(w));
                    order.retain(|n| *n != p(w));
                }
                add(&mut tensors, &mut order, p("attn_qkv"), qkv);
                add(&mut tensors, &mut order, p("ffn_up"), gate_up);
            }
            // An untied output projection (a copy of the embedding table).
            let embd = &tensors["token_embd.weight"];
            let output = from_raw(embd.dtype(), &raw(embd), embd.shape().dims().to_vec());
            add(&mut tensors, &mut order, "output.weight".into(), output);
            // Phi-3.5's long-context RoPE: short factors within the original context (as
            // here), long ones past it, and cos/sin scaled by an attention factor.
            add(
                &mut tensors,
                &mut order,
                "rope_factors_short.weight".into(),
                f32_tensor(pattern(head_dim / 2, 1, 1.0, 3.0)),
            );
            add(
                &mut tensors,
                &mut order,
                "rope_factors_long.weight".into(),
                f32_tensor(pattern(head_dim / 2, 2, 4.0, 40.0)),
            );
            metadata.push(("phi3.rope.scaling.attn_factor".into(), gguf_file::Value::F32(1.19)));
            metadata.push((
                "phi3.rope.scaling.original_context_length".into(),
                gguf_file::Value::U32(2048),
            ));
        }
        "llama-rope-freqs" => {
            // Llama 3.1/3.2 divide some RoPE frequencies by factors stored as a tensor.
            add(
                &mut tensors,
                &mut order,
                "rope_freqs.weight".into(),
                f32_tensor(pattern(head_dim / 2, 3, 0.5, 4.0)),
            );
        }
        "llama-yarn" => {
            // YaRN (Qwen3's 128K files, SmolLM3's long context): a 512-token original context
            // stretched 4 times, so that the frequencies between the correction dimensions mix.
            metadata.push((
                "llama.rope.scaling.type".into(),
                gguf_file::Value::String("yarn".into()),
            ));
            metadata.push(("llama.rope.scaling.factor".into(), gguf_file::Value::F32(4.0)));
            metadata.push((
                "llama.rope.scaling.original_context_length".into(),
                gguf_file::Value::U32(512),
            ));
        }
        "granite" => {
            // Granite 3.3 2B's scalars (its head size is SmolLM2's, 64).
            for (key, v) in [
                ("embedding_scale", 12.0),
                ("residual_scale", 0.22),
                ("attention.scale", 0.015625),
                ("logit_scale", 8.0),
            ] {
                metadata.push((format!("granite.{key}"), gguf_file::Value::F32(v)));
            }
        }
        // SmolLM3: Llama's tensors and rotation, with every fourth layer left without RoPE
        // (the architecture's name alone says so, in llama.cpp and here).
        "smollm3" | "same" => {}
        "gemma3-window-rope" => {
            // A 32-token sliding window, so that short prompts cross it, and Gemma 3 4B's
            // linear RoPE scaling (global layers only).
            assert_eq!(source_arch, "gemma3");
            metadata.retain(|(k, _)| k != "gemma3.attention.sliding_window");
            metadata.push(("gemma3.attention.sliding_window".into(), gguf_file::Value::U32(32)));
            metadata.push((
                "gemma3.rope.scaling.type".into(),
                gguf_file::Value::String("linear".into()),
            ));
            metadata.push(("gemma3.rope.scaling.factor".into(), gguf_file::Value::F32(8.0)));
        }
        "gemma2" => {
            // Gemma 3 without QK-norm, with Gemma 2's soft-capping of attention scores (50) and
            // output logits (30), every other layer local (llama.cpp's and our default for
            // the family), a 32-token window so that short prompts cross it.
            for i in 0..n_layer {
                for w in ["attn_q_norm", "attn_k_norm"] {
                    let name = format!("blk.{i}.{w}.weight");
                    tensors.remove(&name);
                    order.retain(|n| *n != name);
                }
                // Without the norms, Gemma 3's queries and keys are large enough to make every
                // softmax one-hot, where any rounding flips an output: scaled down (exactly, in
                // F32) they keep the scores in the range soft-capping was made for.
                for w in ["attn_q", "attn_k"] {
                    let name = format!("blk.{i}.{w}.weight");
                    let values = tensors[&name].dequantize(&Device::Cpu).expect("dequantize");
                    let scaled = (values * GEMMA2_QK_SCALE).expect("scale");
                    tensors.insert(name, QTensor::quantize(&scaled, GgmlDType::F32).expect("f32"));
                }
            }
            metadata.retain(|(k, _)| {
                !matches!(
                    k.as_str(),
                    "gemma2.attention.sliding_window" | "gemma2.attention.sliding_window_pattern"
                )
            });
            metadata.push(("gemma2.attention.sliding_window".into(), gguf_file::Value::U32(32)));
            metadata.push(("gemma2.attn_logit_softcapping".into(), gguf_file::Value::F32(50.0)));
            metadata.push(("gemma2.final_logit_softcapping".into(), gguf_file::Value::F32(30.0)));
        }
        other => panic!("unknown variant {other}"),
    }
    if how.f32 {
        for t in tensors.values_mut() {
            let values = t.dequantize(&Device::Cpu).expect("dequantize");
            *t = QTensor::quantize(&values, GgmlDType::F32).expect("f32");
        }
    }
    let list: Vec<(&str, &QTensor)> = order.iter().map(|n| (n.as_str(), &tensors[n])).collect();
    write_gguf(metadata, &list)
}

/// GGUF bytes with the architecture key first (llama.cpp reads it before the others) and
/// the rest sorted, so that the same inputs always give the same file.
fn write_gguf(mut metadata: Vec<(String, gguf_file::Value)>, tensors: &[(&str, &QTensor)]) -> Vec<u8> {
    metadata.sort_by(|a, b| (a.0 != "general.architecture", &a.0).cmp(&(b.0 != "general.architecture", &b.0)));
    let meta: Vec<(&str, &gguf_file::Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut out = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut out, &meta, tensors).expect("write GGUF");
    out.into_inner()
}

/// The model whose tokenizer a [`with_pre_tokenizer`] name starts from: Gemma 3's
/// SentencePiece vocabulary for `gemma…` names, SmolLM2's byte-level BPE otherwise.
pub fn tokenizer_source(name: &str) -> &'static str {
    if name.starts_with("gemma") {
        super::GEMMA3
    } else {
        super::SMOLLM2
    }
}

/// A tokenizer-only file: SmolLM2's metadata (vocabulary, merges, special tokens) with
/// `tokenizer.ggml.pre` set to `pre`, and no tensors (`gemma` names keep Gemma 3's
/// SentencePiece tokenizer, `+space` setting its `add_space_prefix`, as Llama 2's, Phi-3's
/// and Mistral's files do). The pre-tokenizer name decides how
/// text is split before the merges, differently for each family of models. A `+nobos`
/// suffix leaves out `tokenizer.ggml.add_bos_token`, so that the family's default decides;
/// `+cut` drops the merges that make " quick" and " brown", tokens that stay in the
/// vocabulary: families that take whole-word tokens as they are still find them.
pub fn with_pre_tokenizer(source: &Path, name: &str) -> Vec<u8> {
    let (pre, no_bos) = match name.strip_suffix("+nobos") {
        Some(pre) => (pre, true),
        None => (name, false),
    };
    let (pre, cut) = match pre.strip_suffix("+cut") {
        Some(pre) => (pre, true),
        None => (pre, false),
    };
    let (pre, space) = match pre.strip_suffix("+space") {
        Some(pre) => (pre, true),
        None => (pre, false),
    };
    let spm = pre == "gemma";
    let mut file = std::fs::File::open(source).expect("source model");
    let content = gguf_file::Content::read(&mut file).expect("source header");
    let mut metadata: Vec<(String, gguf_file::Value)> = content
        .metadata
        .into_iter()
        .filter(|(k, _)| {
            let replaced = (k == "tokenizer.ggml.pre" && !spm)
                || (no_bos && k == "tokenizer.ggml.add_bos_token")
                || (space && k == "tokenizer.ggml.add_space_prefix");
            !replaced
        })
        .collect();
    if !spm {
        metadata.push(("tokenizer.ggml.pre".into(), gguf_file::Value::String(pre.into())));
    }
    if space {
        metadata.push(("tokenizer.ggml.add_space_prefix".into(), gguf_file::Value::Bool(true)));
    }
    if cut {
        for (k, v) in &mut metadata {
            if k == "tokenizer.ggml.merges" {
                if let gguf_file::Value::Array(merges) = v {
                    merges.retain(|m| {
                        let m = m.to_string().expect("merge");
                        !matches!(m.replace(' ', "").as_str(), "Ġquick" | "Ġbrown")
                    });
                }
            }
        }
    }
    write_gguf(metadata, &[])
}

/// Pre-tokenizer names to check against llama.cpp: every name it knows (some of which it
/// splits the same way), and one it does not.
pub const PRE_TOKENIZERS: &[&str] = &[
    "default",
    "llama3",
    "llama-v3",
    "llama-bpe",
    "falcon3",
    "pixtral",
    "midm-2.0",
    "lfm2",
    "dbrx",
    "smaug-bpe",
    "deepseek-llm",
    "deepseek-coder",
    "deepseek-v3",
    "deepseek-r1-qwen",
    "falcon",
    "mpt",
    "starcoder",
    "gpt-2",
    "phi-2",
    "jina-es",
    "jina-de",
    "jina-v1-en",
    "jina-v2-es",
    "jina-v2-de",
    "jina-v2-code",
    "refact",
    "command-r",
    "qwen2",
    "qwen35",
    "stablelm2",
    "olmo",
    "poro-chat",
    "gpt3-finnish",
    "bloom",
    "viking",
    "jais",
    "jais-2",
    "tekken",
    "smollm",
    "codeshell",
    "chatglm-bpe",
    "exaone",
    "exaone4",
    "minerva-7b",
    "chameleon",
    "gpt-4o",
    "minimax-m2",
    "superbpe",
    "trillion",
    "bailingmoe",
    "seed-coder",
    "kimi-k2",
    "grok-2",
    "hunyuan",
    "hunyuan-dense",
    "a.x-4.0",
    "llada-moe",
    "megrez",
    "gigachat",
    "mellum",
    "granite-docling",
    "afmoe",
    "solar-open",
    "roberta-bpe",
    "no-such-pre-tokenizer",
    "llama-bpe+nobos",
    "tekken+nobos",
    "qwen2+nobos",
    "gpt-2+nobos",
    "llama-bpe+cut",
    "gpt-2+cut",
    "falcon-h1",
    "kormo",
    "glm4",
    "mellum2",
    "llama4",
    "kanana2",
    "bailingmoe2",
    "gemma",
    "gemma+space",
    "gemma+space+nobos",
];
