// Dequantization of one 32-value sub-block of a GGUF block, read straight from the file's
// bytes (`w`, declared by the kernel that includes this). Blocks are not 4-byte aligned in
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
    return unpack2x16float(rd32(off) & 0xffffu).x;
}

fn i8_of(b: u32) -> f32 {
    return f32((i32(b) << 24u) >> 24u);
}

// Q4_0: f16 d, 16 bytes of nibbles; low nibbles are values 0..16, high ones 16..32.
fn deq_q4_0(b: u32, s: u32) -> array<f32, 32> {
    var v: array<f32, 32>;
    let d = f16_at(b);
    for (var j = 0u; j < 4u; j++) {
        let q = rd32(b + 2u + 4u * j);
        for (var k = 0u; k < 4u; k++) {
            let by = (q >> (8u * k)) & 0xffu;
            v[4u * j + k] = (f32(by & 15u) - 8.0) * d;
            v[4u * j + k + 16u] = (f32(by >> 4u) - 8.0) * d;
        }
    }
    return v;
}

// Q4_1: f16 d, f16 m, 16 bytes of nibbles; values are q * d + m.
fn deq_q4_1(b: u32, s: u32) -> array<f32, 32> {
    var v = deq_q4_1_scaled(b, s);
    let m = min_q4_1(b);
    for (var k = 0u; k < 32u; k++) {
        v[k] += m;
    }
    return v;
}

// The q*d part of a Q4_1 block, and its minimum on its own: the CPU multiplies the minimum
// by the activations' block sum rounded through f16 (ggml's q8_1 `s`), so the matmul does too.
fn deq_q4_1_scaled(b: u32, s: u32) -> array<f32, 32> {
    var v: array<f32, 32>;
    let d = f16_at(b);
    for (var j = 0u; j < 4u; j++) {
        let q = rd32(b + 4u + 4u * j);
        for (var k = 0u; k < 4u; k++) {
            let by = (q >> (8u * k)) & 0xffu;
            v[4u * j + k] = f32(by & 15u) * d;
            v[4u * j + k + 16u] = f32(by >> 4u) * d;
        }
    }
    return v;
}

fn min_q4_1(b: u32) -> f32 {
    return f16_at(b + 2u);
}

// Q5_0: f16 d, 32 fifth bits, 16 bytes of nibbles; values are (q - 16) * d.
fn deq_q5_0(b: u32, s: u32) -> array<f32, 32> {
    var v: array<f32, 32>;
    let d = f16_at(b);
    let qh = rd32(b + 2u);
    for (var j = 0u; j < 4u; j++) {
        let q = rd32(b + 6u + 4u * j);
        for (var k = 0u; k < 4u; k++) {
            let i = 4u * j + k;
            let by = (q >> (8u * k)) & 0xffu;
            let lo = (by & 15u) | (((qh >> i) & 1u) << 4u);
            let hi = (by >> 4u) | (((qh >> (i + 16u)) & 1u) << 4u);
            v[i] = (f32(lo) - 16.0) * d;
            v[i + 16u] = (f32(hi) - 16.0) * d;
        }
    }
    return v;
}

// Q5_1: f16 d, f16 m, 32 fifth bits, 16 bytes of nibbles; values are q * d + m.
fn deq_q5_1(b: u32, s: u32) -> array<f32, 32> {
    var v = deq_q5_1_scaled(b, s);
    let m = min_q5_1(b);
    for (var k = 0u; k < 32u; k++) {
        v[k] += m;
    }
    return v;
}

fn deq_q5_1_scaled(b: u32, s: u32) -> array<f32, 32> {
    var v: array<f32, 32>;
    let d = f16_at(b);
    let qh = rd32(b + 4u);
    for (var j = 0u; j < 4u; j++) {
        let q = rd32(b + 8u + 4u * j);
        for (var k = 0u; k < 4u; k++) {
            let i = 4u * j + k;
            let by = (q >> (8u * k)) & 0xffu;
            v[i] = f32((by & 15u) | (((qh >> i) & 1u) << 4u)) * d;
            v[i + 16u] = f32((by >> 4u) | (((qh >> (i + 16u)) & 1u) << 4u)) * d;
        }
    }
    return v;
}

fn min_q5_1(b: u32) -> f32 {
    return f16_at(b + 2u);
}

fn no_min(b: u32) -> f32 {
    return 0.0;
}

// Q8_0: f16 d, 32 signed bytes.
fn deq_q8_0(b: u32, s: u32) -> array<f32, 32> {
    var v: array<f32, 32>;
    let d = f16_at(b);
    for (var j = 0u; j < 8u; j++) {
        let q = rd32(b + 2u + 4u * j);
        for (var k = 0u; k < 4u; k++) {
            v[4u * j + k] = i8_of((q >> (8u * k)) & 0xffu) * d;
        }
    }
    return v;
}

// F16 / BF16 / F32 "blocks" are 32 plain values.
fn deq_f16(b: u32, s: u32) -> array<f32, 32> {
    var v: array<f32, 32>;
    for (var j = 0u; j < 16u; j++) {
        let p = unpack2x16float(rd32(b + 4u * j));
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

// The 6-bit scale and min of sub-block `j` of a Q4_K / Q5_K block (12 packed bytes at b + 4).
fn scale_min_k4(b: u32, j: u32) -> vec2<f32> {
    let q = b + 4u;
    if (j < 4u) {
        return vec2<f32>(f32(byte_at(q + j) & 63u), f32(byte_at(q + j + 4u) & 63u));
    }
    let sc = (byte_at(q + j + 4u) & 15u) | ((byte_at(q + j - 4u) >> 6u) << 4u);
    let m = (byte_at(q + j + 4u) >> 4u) | ((byte_at(q + j) >> 6u) << 4u);
    return vec2<f32>(f32(sc), f32(m));
}

// Q4_K: 256 values in 8 sub-blocks; f16 d, f16 dmin, 12 scale bytes, 128 bytes of nibbles
// (sub-blocks 2j and 2j + 1 share bytes 32j.., low and high nibbles).
fn deq_q4_k(b: u32, s: u32) -> array<f32, 32> {
    var v: array<f32, 32>;
    let sm = scale_min_k4(b, s);
    let d = f16_at(b) * sm.x;
    let m = f16_at(b + 2u) * sm.y;
    let shift = (s & 1u) * 4u;
    let base = b + 16u + 32u * (s >> 1u);
    for (var j = 0u; j < 8u; j++) {
        let q = rd32(base + 4u * j);
        for (var k = 0u; k < 4u; k++) {
            v[4u * j + k] = d * f32((q >> (8u * k + shift)) & 15u) - m;
        }
    }
    return v;
}

// Q5_K: as Q4_K plus 32 bytes of fifth bits at b + 16 (bit s of byte l for value l).
fn deq_q5_k(b: u32, s: u32) -> array<f32, 32> {
    var v: array<f32, 32>;
    let sm = scale_min_k4(b, s);
    let d = f16_at(b) * sm.x;
    let m = f16_at(b + 2u) * sm.y;
    let shift = (s & 1u) * 4u;
    let base = b + 48u + 32u * (s >> 1u);
    for (var j = 0u; j < 8u; j++) {
        let q = rd32(base + 4u * j);
        let h = rd32(b + 16u + 4u * j);
        for (var k = 0u; k < 4u; k++) {
            let lo = (q >> (8u * k + shift)) & 15u;
            let hi = ((h >> (8u * k)) >> s) & 1u;
            v[4u * j + k] = d * f32(lo | (hi << 4u)) - m;
        }
    }
    return v;
}

// Q6_K: 256 values; 128 bytes of low nibbles, 64 bytes of high 2-bit pairs, 16 signed
// scales (one per 16 values), f16 d at the end.
fn deq_q6_k(b: u32, s: u32) -> array<f32, 32> {
    var v: array<f32, 32>;
    let n = s >> 2u;
    let t = s & 3u;
    let d = f16_at(b + 208u);
    let ql = b + 64u * n + (t & 1u) * 32u;
    let qh = b + 128u + 32u * n;
    let nib_shift = select(0u, 4u, t >= 2u);
    let sc0 = d * i8_of(byte_at(b + 192u + 8u * n + 2u * t));
    let sc1 = d * i8_of(byte_at(b + 192u + 8u * n + 2u * t + 1u));
    for (var j = 0u; j < 8u; j++) {
        let lq = rd32(ql + 4u * j);
        let hq = rd32(qh + 4u * j);
        for (var k = 0u; k < 4u; k++) {
            let l = 4u * j + k;
            let lo = (lq >> (8u * k + nib_shift)) & 15u;
            let hi = (hq >> (8u * k + 2u * t)) & 3u;
            let q = f32(i32(lo | (hi << 4u)) - 32);
            v[l] = select(sc0, sc1, l >= 16u) * q;
        }
    }
    return v;
}
