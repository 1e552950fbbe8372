// Rounds activations the way the CPU kernels (and llama.cpp's) quantize them before a
// product with quantized weights, so that both backends multiply the same numbers:
// mode 1: 8-bit per 32 values, scale rounded through f16 (ggml's q8_0 / q8_1);
// mode 2: 8-bit per 256 values, the largest magnitude mapped to -128 (ggml's q8_K).
// One thread per block; values are written back dequantized (scale * q) in f32, and in
// mode 1 each block's sum as ggml's q8_1 keeps it.

struct Params {
    blocks: u32,
    mode: u32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read_write> sums: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

// C's roundf: halves away from zero (WGSL's round() goes to even).
fn round_away(v: f32) -> f32 {
    return sign(v) * floor(abs(v) + 0.5);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let b = gid.x + gid.y * 65535u * 64u;
    if (b >= p.blocks) {
        return;
    }
    if (p.mode == 1u) {
        let base = b * 32u;
        var amax = 0.0;
        for (var i = 0u; i < 32u; i++) {
            amax = max(amax, abs(x[base + i]));
        }
        let d = amax / 127.0;
        var id = 0.0;
        if (d != 0.0) {
            id = 1.0 / d;
        }
        let dh = quantizeToF16(d);
        var qsum = 0.0;
        for (var i = 0u; i < 32u; i++) {
            let q = round_away(x[base + i] * id);
            y[base + i] = q * dh;
            qsum += q;
        }
        // ggml's q8_1 `s`: the unrounded scale times the sum, rounded through f16.
        sums[b] = quantizeToF16(qsum * d);
    } else {
        let base = b * 256u;
        var amax = 0.0;
        var mx = 0.0;
        for (var i = 0u; i < 256u; i++) {
            let v = x[base + i];
            if (abs(v) > amax) {
                amax = abs(v);
                mx = v;
            }
        }
        if (amax == 0.0) {
            for (var i = 0u; i < 256u; i++) {
                y[base + i] = 0.0;
            }
            return;
        }
        let iscale = -128.0 / mx;
        let d = 1.0 / iscale;
        for (var i = 0u; i < 256u; i++) {
            y[base + i] = min(round_away(iscale * x[base + i]), 127.0) * d;
        }
    }
}
