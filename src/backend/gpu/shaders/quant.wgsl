// GGUF blocks read straight from the file's bytes (`w`, declared by the kernel that includes
// this): for each block type its integer codes per 32-value sub-block (`codes_*`), the
// products' integer scales per sub-block (`sub_scales_*`), the float arithmetic that turns a
// block's integer sums into its share of a dot product (`term_*`, the CPU kernels' formulas
// in their order: src/backend/kernels/scalar.rs), and the dequantized values for the
// embedding lookup (`deq_*`, as candle dequantizes). Blocks are not 4-byte aligned in
// general (Q4_0 is 18 bytes, Q6_K 210), so every read goes through `rd32`.

fn rd32(off: u32) -> u32 {
    let i = off >> 2u;
    let s = (off & 3u) * 8u;
    if (s == 0u) {
        return w[i];
    }
    return (w[i] >> s) | (w[i + 1u] << (32u - s));
}

fn byte_at(off: u32) -> u32 {
    return (w[off >> 2u] >> ((off & 3u) * 8u)) & 0xffu;
}

fn f16_at(off: u32) -> f32 {
    return f16_value(rd32(off) & 0xffffu);
}

fn i8_of(b: u32) -> f32 {
    return f32((i32(b) << 24u) >> 24u);
}

// The 32-value types: one scale (and for Q4_1/Q5_1 a minimum) per block.

// Q4_0: f16 d, 16 bytes of nibbles; low nibbles are values 0..16, high ones 16..32; q - 8.
fn codes_q4_0(b: u32, s: u32) -> array<f32, 32> {
    var v: array<f32, 32>;
    for (var j = 0u; j < 4u; j++) {
        let q = rd32(b + 2u + 4u * j);
        for (var k = 0u; k < 4u; k++) {
            let by = (q >> (8u * k)) & 0xffu;
            v[4u * j + k] = f32(by & 15u) - 8.0;
            v[4u * j + k + 16u] = f32(by >> 4u) - 8.0;
        }
    }
    return v;
}

// Q4_1: f16 d, f16 m, 16 bytes of nibbles; values are q * d + m.
fn codes_q4_1(b: u32, s: u32) -> array<f32, 32> {
    var v: array<f32, 32>;
    for (var j = 0u; j < 4u; j++) {
        let q = rd32(b + 4u + 4u * j);
        for (var k = 0u; k < 4u; k++) {
            let by = (q >> (8u * k)) & 0xffu;
            v[4u * j + k] = f32(by & 15u);
            v[4u * j + k + 16u] = f32(by >> 4u);
        }
    }
    return v;
}

// Q5_0 / Q5_1: 32 fifth bits at `qh`, then 16 bytes of nibbles; Q5_0 is q - 16.
fn codes_q5(qh_at: u32, off: f32) -> array<f32, 32> {
    var v: array<f32, 32>;
    let qh = rd32(qh_at);
    for (var j = 0u; j < 4u; j++) {
        let q = rd32(qh_at + 4u + 4u * j);
        for (var k = 0u; k < 4u; k++) {
            let i = 4u * j + k;
            let by = (q >> (8u * k)) & 0xffu;
            let lo = (by & 15u) | (((qh >> i) & 1u) << 4u);
            let hi = (by >> 4u) | (((qh >> (i + 16u)) & 1u) << 4u);
            v[i] = f32(lo) - off;
            v[i + 16u] = f32(hi) - off;
        }
    }
    return v;
}

fn codes_q5_0(b: u32, s: u32) -> array<f32, 32> {
    return codes_q5(b + 2u, 16.0);
}

fn codes_q5_1(b: u32, s: u32) -> array<f32, 32> {
    return codes_q5(b + 4u, 0.0);
}

// Q8_0: f16 d, 32 signed bytes.
fn codes_q8_0(b: u32, s: u32) -> array<f32, 32> {
    var v: array<f32, 32>;
    for (var j = 0u; j < 8u; j++) {
        let q = rd32(b + 2u + 4u * j);
        for (var k = 0u; k < 4u; k++) {
            v[4u * j + k] = i8_of((q >> (8u * k)) & 0xffu);
        }
    }
    return v;
}

// Every value of a 32-value block counts once: the integer sum is Σ q·a.
fn sub_scales_one(b: u32, s: u32) -> vec3<i32> {
    return vec3<i32>(1, 1, 0);
}

fn no_min(b: u32) -> f32 {
    return 0.0;
}

fn min_at_2(b: u32) -> f32 {
    return f16_at(b + 2u);
}

// scalar::dot_blocks: d_w · d_a · Σ q·a, plus m_w · s_a for the types with a minimum.
// `bs` holds the block's scale and minimum, `si` the integer sum of the codes' products (in
// f32, exact), `xd` and `xs` the activation block's scale and (q8_1) sum.
fn scales_32(b: u32) -> vec2<f32> {
    return vec2<f32>(f16_at(b), block_min(b));
}

fn term_32(bs: vec2<f32>, si: f32, sm: f32, xd: f32, xs: f32, z: u32) -> f32 {
    return bs.x * xd * si;
}

fn term_32_min(bs: vec2<f32>, si: f32, sm: f32, xd: f32, xs: f32, z: u32) -> f32 {
    return keep(bs.x * xd * si, z) + keep(bs.y * xs, z);
}

fn deq_32(b: u32, s: u32) -> array<f32, 32> {
    var v = codes(b, s);
    let dm = scales_32(b);
    for (var k = 0u; k < 32u; k++) {
        v[k] = v[k] * dm.x;
        if (HAS_MIN) {
            v[k] += dm.y;
        }
    }
    return v;
}

// The k-quants: 256 values in 8 sub-blocks of 32, integer scales per sub-block.

// The 6-bit scale and min of sub-block `j` of a Q4_K / Q5_K block (12 packed bytes at b + 4).
fn scale_min_k4(b: u32, j: u32) -> vec2<u32> {
    let q = b + 4u;
    if (j < 4u) {
        return vec2<u32>(byte_at(q + j) & 63u, byte_at(q + j + 4u) & 63u);
    }
    let sc = (byte_at(q + j + 4u) & 15u) | ((byte_at(q + j - 4u) >> 6u) << 4u);
    let m = (byte_at(q + j + 4u) >> 4u) | ((byte_at(q + j) >> 6u) << 4u);
    return vec2<u32>(sc, m);
}

fn sub_scales_k4(b: u32, s: u32) -> vec3<i32> {
    let sm = vec2<i32>(scale_min_k4(b, s));
    return vec3<i32>(sm.x, sm.x, sm.y);
}

// Q4_K: f16 d, f16 dmin, 12 scale bytes, 128 bytes of nibbles (sub-blocks 2j and 2j + 1
// share bytes 32j.., low and high nibbles).
fn codes_q4_k(b: u32, s: u32) -> array<f32, 32> {
    var v: array<f32, 32>;
    let shift = (s & 1u) * 4u;
    let base = b + 16u + 32u * (s >> 1u);
    for (var j = 0u; j < 8u; j++) {
        let q = rd32(base + 4u * j);
        for (var k = 0u; k < 4u; k++) {
            v[4u * j + k] = f32((q >> (8u * k + shift)) & 15u);
        }
    }
    return v;
}

// Q5_K: as Q4_K plus 32 bytes of fifth bits at b + 16 (bit s of byte l for value l).
fn codes_q5_k(b: u32, s: u32) -> array<f32, 32> {
    var v: array<f32, 32>;
    let shift = (s & 1u) * 4u;
    let base = b + 48u + 32u * (s >> 1u);
    for (var j = 0u; j < 8u; j++) {
        let q = rd32(base + 4u * j);
        let h = rd32(b + 16u + 4u * j);
        for (var k = 0u; k < 4u; k++) {
            let lo = (q >> (8u * k + shift)) & 15u;
            let hi = ((h >> (8u * k)) >> s) & 1u;
            v[4u * j + k] = f32(lo | (hi << 4u));
        }
    }
    return v;
}

// scalar::dot_k_scale_min: d_a · (d · Σ sc·(q·a) − dmin · Σ m·Σa).
fn scales_k4(b: u32) -> vec2<f32> {
    return vec2<f32>(f16_at(b), f16_at(b + 2u));
}

fn term_k4(bs: vec2<f32>, si: f32, sm: f32, xd: f32, xs: f32, z: u32) -> f32 {
    return xd * (keep(bs.x * si, z) - keep(bs.y * sm, z));
}

fn deq_k4(b: u32, s: u32) -> array<f32, 32> {
    var v = codes(b, s);
    let sm = vec2<f32>(scale_min_k4(b, s));
    let d = f16_at(b) * sm.x;
    let m = f16_at(b + 2u) * sm.y;
    for (var k = 0u; k < 32u; k++) {
        v[k] = d * v[k] - m;
    }
    return v;
}

// Q6_K: 128 bytes of low nibbles, 64 bytes of high 2-bit pairs, 16 signed scales (one per
// 16 values), f16 d at the end; values are q - 32.
fn codes_q6_k(b: u32, s: u32) -> array<f32, 32> {
    var v: array<f32, 32>;
    let n = s >> 2u;
    let t = s & 3u;
    let ql = b + 64u * n + (t & 1u) * 32u;
    let qh = b + 128u + 32u * n;
    let nib_shift = select(0u, 4u, t >= 2u);
    for (var j = 0u; j < 8u; j++) {
        let lq = rd32(ql + 4u * j);
        let hq = rd32(qh + 4u * j);
        for (var k = 0u; k < 4u; k++) {
            let lo = (lq >> (8u * k + nib_shift)) & 15u;
            let hi = (hq >> (8u * k + 2u * t)) & 3u;
            v[4u * j + k] = f32(i32(lo | (hi << 4u)) - 32);
        }
    }
    return v;
}

fn sub_scales_q6_k(b: u32, s: u32) -> vec3<i32> {
    let at = b + 192u + 8u * (s >> 2u) + 2u * (s & 3u);
    return vec3<i32>(i32(i8_of(byte_at(at))), i32(i8_of(byte_at(at + 1u))), 0);
}

// scalar::dot_q6_k: d_a · d · Σ sc·(q·a).
fn scales_q6_k(b: u32) -> vec2<f32> {
    return vec2<f32>(f16_at(b + 208u), 0.0);
}

fn term_q6_k(bs: vec2<f32>, si: f32, sm: f32, xd: f32, xs: f32, z: u32) -> f32 {
    return xd * bs.x * si;
}

fn deq_q6_k(b: u32, s: u32) -> array<f32, 32> {
    var v = codes(b, s);
    let d = f16_at(b + 208u);
    let sc = vec2<f32>(vec2<i32>(sub_scales_q6_k(b, s).xy));
    let sc0 = d * sc.x;
    let sc1 = d * sc.y;
    for (var k = 0u; k < 32u; k++) {
        v[k] = select(sc0, sc1, k >= 16u) * v[k];
    }
    return v;
}

// F16 / BF16 / F32 "blocks" are 32 plain values (the activations are not rounded for them).
fn deq_f16(b: u32, s: u32) -> array<f32, 32> {
    var v: array<f32, 32>;
    for (var j = 0u; j < 16u; j++) {
        let p = unpack_f16(rd32(b + 4u * j));
        v[2u * j] = p.x;
        v[2u * j + 1u] = p.y;
    }
    return v;
}

fn deq_bf16(b: u32, s: u32) -> array<f32, 32> {
    var v: array<f32, 32>;
    for (var j = 0u; j < 16u; j++) {
        let q = rd32(b + 4u * j);
        v[2u * j] = bitcast<f32>(q << 16u);
        v[2u * j + 1u] = bitcast<f32>(q & 0xffff0000u);
    }
    return v;
}

fn deq_f32(b: u32, s: u32) -> array<f32, 32> {
    var v: array<f32, 32>;
    for (var j = 0u; j < 32u; j++) {
        v[j] = bitcast<f32>(rd32(b + 4u * j));
    }
    return v;
}

fn no_codes(b: u32, s: u32) -> array<f32, 32> {
    return array<f32, 32>();
}

fn no_scales(b: u32) -> vec2<f32> {
    return vec2<f32>(0.0);
}

fn no_term(bs: vec2<f32>, si: f32, sm: f32, xd: f32, xs: f32, z: u32) -> f32 {
    return 0.0;
}
