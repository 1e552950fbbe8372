// Half floats converted by hand, as the CPU converts them (the `half` crate: round to nearest
// even, subnormals kept, overflow to infinity). WGSL's quantizeToF16 and pack2x16float /
// unpack2x16float may flush f16 subnormals to zero, and do on Mesa's lavapipe: activation
// scales below 2^-14 (blocks of values under 0.008) and Gemma 3's Q6_K block scales are
// subnormal.

// The f16 nearest to `v`, as its 16 bits (NaN is not expected).
fn f16_bits(v: f32) -> u32 {
    let sign = (bitcast<u32>(v) >> 16u) & 0x8000u;
    let a = abs(v);
    if (a >= 65520.0) {
        return sign | 0x7c00u;
    }
    if (a < 6.1035156e-5) {
        // Subnormal: a multiple of 2^-24 (scaling by a power of two is exact; round() goes
        // to even, and 1024 is the smallest normal's bits).
        return sign | u32(round(a * 16777216.0));
    }
    // Round to 11 significant bits: a / ulp is exact, the result may carry into the next
    // power of two, which the bit layout below takes as it is.
    let ulp = bitcast<f32>(((bitcast<u32>(a) >> 23u) - 10u) << 23u);
    let r = bitcast<u32>(round(a / ulp) * ulp);
    return sign | ((((r >> 23u) - 112u) << 10u) | ((r >> 13u) & 0x3ffu));
}

// The value of the f16 in the low 16 bits of `h` (infinities and NaN are not expected).
fn f16_value(h: u32) -> f32 {
    let e = (h >> 10u) & 0x1fu;
    let m = h & 0x3ffu;
    let normal = bitcast<f32>(((e + 112u) << 23u) | (m << 13u));
    let v = select(normal, f32(m) * 5.9604645e-8, e == 0u);
    return select(v, -v, (h & 0x8000u) != 0u);
}

// `v` rounded through f16.
fn round_f16(v: f32) -> f32 {
    return f16_value(f16_bits(v));
}

// Two values as the low and high halves of a u32 (pack2x16float's layout).
fn pack_f16(a: f32, b: f32) -> u32 {
    return f16_bits(a) | (f16_bits(b) << 16u);
}

fn unpack_f16(p: u32) -> vec2<f32> {
    return vec2<f32>(f16_value(p & 0xffffu), f16_value(p >> 16u));
}
