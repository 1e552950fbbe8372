//! The WGSL kernels and their variants: one source file per kernel (`shaders/`), and for the
//! kernels that read weights one variant per GGUF block type, made by naming the type's
//! dequantization function and block size in a prefix.

use candle_core::quantized::GgmlDType;

/// Input rows one matmul thread handles per pass over its weight row (`R` in matmul.wgsl,
/// which gets it from the variant prefix).
pub const MATMUL_ROWS: usize = 8;

const QUANT: &str = include_str!("shaders/quant.wgsl");
const MATMUL_COMMON: &str = include_str!("shaders/matmul_common.wgsl");
const MATMUL: &str = include_str!("shaders/matmul.wgsl");
const MATMUL_SUBGROUP: &str = include_str!("shaders/matmul_subgroup.wgsl");
/// Browsers need WGSL's `enable subgroups;` (first in the module, before the variant's
/// prefix); wgpu's own compiler (native) rejects the directive and enables subgroup
/// functions with the device feature.
const SUBGROUPS: &str = if cfg!(target_arch = "wasm32") {
    "enable subgroups;\n"
} else {
    ""
};
const EMBED: &str = include_str!("shaders/embed.wgsl");
const RMS_NORM: &str = include_str!("shaders/rms_norm.wgsl");
const ROPE: &str = include_str!("shaders/rope.wgsl");
const ATTENTION: &str = include_str!("shaders/attention.wgsl");
const KV_APPEND: &str = include_str!("shaders/kv_append.wgsl");
const ELEMENTWISE: &str = include_str!("shaders/elementwise.wgsl");
const EXP: &str = include_str!("shaders/exp.wgsl");
const F16: &str = include_str!("shaders/f16.wgsl");
const KEEP: &str = include_str!("shaders/keep.wgsl");
const QUANTIZE_ACT: &str = include_str!("shaders/quantize_act.wgsl");

/// A GGUF block type the kernels read directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Variant {
    pub name: &'static str,
    pub block_bytes: u32,
    /// 32-value sub-blocks per block.
    pub subs: u32,
}

impl Variant {
    pub fn of(dtype: GgmlDType) -> Option<Variant> {
        use GgmlDType as T;
        let (name, block_bytes, subs) = match dtype {
            T::Q4_0 => ("q4_0", 18, 1),
            T::Q4_1 => ("q4_1", 20, 1),
            T::Q5_0 => ("q5_0", 22, 1),
            T::Q5_1 => ("q5_1", 24, 1),
            T::Q8_0 => ("q8_0", 34, 1),
            T::Q4K => ("q4_k", 144, 8),
            T::Q5K => ("q5_k", 176, 8),
            T::Q6K => ("q6_k", 210, 8),
            T::F16 => ("f16", 64, 1),
            T::BF16 => ("bf16", 64, 1),
            T::F32 => ("f32", 128, 1),
            _ => return None,
        };
        Some(Variant {
            name,
            block_bytes,
            subs,
        })
    }

    /// The kernel for a `dtype` matrix with rows of `in_dim` values, if one reads it.
    pub fn reading(dtype: GgmlDType, in_dim: usize) -> Option<Variant> {
        Self::of(dtype).filter(|v| in_dim.is_multiple_of(v.block_values()))
    }

    /// Whether the CPU kernels round activations to 8 bits before multiplying this type (all
    /// but the float types); they do it per weight block, 32 or 256 values.
    pub fn quantizes_activations(&self) -> bool {
        !matches!(self.name, "f16" | "bf16" | "f32")
    }

    pub fn block_values(&self) -> usize {
        self.subs as usize * 32
    }

    pub fn row_bytes(&self, in_dim: usize) -> usize {
        in_dim / self.block_values() * self.block_bytes as usize
    }

    /// How many sub-blocks' scaled integer sums f32 adds exactly (every partial sum below
    /// 2^24): a sub-block's is at most 16 · max|code| · 128 · max|scale| for each half, so
    /// Q4_K 3 870 720 (four), Q5_K 7 999 488 (two), Q6_K 16 777 216 (one).
    fn exact_sums(&self) -> u32 {
        match self.name {
            "q4_k" => 4,
            "q5_k" => 2,
            _ => 1,
        }
    }

    /// Types whose blocks carry a minimum (`q * d + m`).
    pub fn has_min(&self) -> bool {
        matches!(self.name, "q4_1" | "q5_1")
    }

    fn prefix(&self) -> String {
        // The block type's functions in quant.wgsl: integer codes, their integer scales per
        // sub-block, the block's float epilogue, its dequantized values (the embedding).
        let (codes, scales, block, term, deq) = match self.name {
            "q4_0" | "q4_1" | "q5_0" | "q5_1" | "q8_0" => (
                format!("codes_{}", self.name),
                "sub_scales_one",
                "scales_32",
                if self.has_min() { "term_32_min" } else { "term_32" },
                "deq_32".to_string(),
            ),
            "q4_k" | "q5_k" => (
                format!("codes_{}", self.name),
                "sub_scales_k4",
                "scales_k4",
                "term_k4",
                "deq_k4".into(),
            ),
            "q6_k" => (
                "codes_q6_k".into(),
                "sub_scales_q6_k",
                "scales_q6_k",
                "term_q6_k",
                "deq_q6_k".into(),
            ),
            _ => (
                "no_codes".into(),
                "sub_scales_one",
                "no_scales",
                "no_term",
                format!("deq_{}", self.name),
            ),
        };
        let min = if self.has_min() { "min_at_2" } else { "no_min" };
        format!(
            "const BLOCK_BYTES: u32 = {}u;\nconst SUBS: u32 = {}u;\nconst HAS_MIN: bool = {};\n\
             const FLOAT: bool = {};\nconst USES_ASUM: bool = {};\nconst SUMS_EXACT: u32 = {}u;\n\
             const R: u32 = {MATMUL_ROWS}u;\nconst R2: u32 = {}u;\n\
             fn deq(b: u32, s: u32) -> array<f32, 32> {{ return {deq}(b, s); }}\n\
             fn codes(b: u32, s: u32) -> array<f32, 32> {{ return {codes}(b, s); }}\n\
             fn sub_scales(b: u32, s: u32) -> vec3<i32> {{ return {scales}(b, s); }}\n\
             fn block_scales(b: u32) -> vec2<f32> {{ return {block}(b); }}\n\
             fn block_term(bs: vec2<f32>, si: f32, sm: f32, xd: f32, xs: f32, z: u32) -> f32 {{ return {term}(bs, si, sm, xd, xs, z); }}\n\
             fn block_min(b: u32) -> f32 {{ return {min}(b); }}\n{KEEP}\n{F16}\n{QUANT}\n",
            self.block_bytes,
            self.subs,
            self.has_min(),
            !self.quantizes_activations(),
            matches!(self.name, "q4_k" | "q5_k"),
            self.exact_sums(),
            2 * MATMUL_ROWS,
        )
    }
}

/// Every block type with a GPU kernel.
pub const GPU_TYPES: [GgmlDType; 11] = [
    GgmlDType::Q4_0,
    GgmlDType::Q4_1,
    GgmlDType::Q5_0,
    GgmlDType::Q5_1,
    GgmlDType::Q8_0,
    GgmlDType::Q4K,
    GgmlDType::Q5K,
    GgmlDType::Q6K,
    GgmlDType::F16,
    GgmlDType::BF16,
    GgmlDType::F32,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kernel {
    Matmul(Variant),
    /// The same product with a workgroup per weight row, summed over subgroups.
    MatmulSubgroup(Variant),
    Embed(Variant),
    RmsNorm,
    Rope,
    Attention,
    KvAppend,
    QuantizeAct,
    Elementwise(&'static str),
}

impl Kernel {
    /// The WGSL source and its entry point.
    pub fn source(&self) -> (String, &'static str) {
        match self {
            Kernel::Matmul(v) => (v.prefix() + MATMUL_COMMON + MATMUL, "main"),
            Kernel::MatmulSubgroup(v) => (
                SUBGROUPS.to_string() + &v.prefix() + MATMUL_COMMON + MATMUL_SUBGROUP,
                "main",
            ),
            Kernel::Embed(v) => (v.prefix() + EMBED, "main"),
            Kernel::RmsNorm => (KEEP.to_string() + RMS_NORM, "main"),
            Kernel::Rope => (KEEP.to_string() + ROPE, "main"),
            Kernel::Attention => (KEEP.to_string() + EXP + F16 + ATTENTION, "main"),
            Kernel::KvAppend => (F16.to_string() + KV_APPEND, "main"),
            Kernel::QuantizeAct => (F16.to_string() + QUANTIZE_ACT, "main"),
            Kernel::Elementwise(entry) => (KEEP.to_string() + EXP + ELEMENTWISE, entry),
        }
    }
}
