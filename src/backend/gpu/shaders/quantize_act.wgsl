// Rounds activations to 8-bit codes before a product with quantized weights, step for step
// as the CPU kernels do it (src/backend/kernels/q8.rs, after ggml's reference), so that both
// backends multiply the same integers:
// mode 1: 32 values per block, d = amax / 127 (ggml's q8_0 / q8_1);
// mode 2: 256 values per block, the largest magnitude mapped to -128 (ggml's q8_K).
// One thread per block. The codes are written as f32 (small integers, exact); per block,
// mode 1 writes d rounded through f16 and ggml's q8_1 sum `s` (two slots), mode 2 writes d
// and the sums of the codes of each 32-value sub-block (nine slots; the k-quants' minimums
// multiply those, as the CPU's `bsums`).

struct Params {
    blocks: u32,
    mode: u32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read_write> scales: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

// C's roundf (halves away from zero), exactly: WGSL's round() goes to even, and
// floor(|v| + 0.5) would take 0.49999997 up to 1. `v - trunc(v)` is exact.
fn round_away(v: f32) -> f32 {
    let t = trunc(v);
    if (abs(v - t) >= 0.5) {
        return t + sign(v);
    }
    return t;
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
        var qsum = 0.0;
        for (var i = 0u; i < 32u; i++) {
            let q = round_away(x[base + i] * id);
            y[base + i] = q;
            qsum += q;
        }
        scales[2u * b] = round_f16(d);
        // ggml's q8_1 `s`: the unrounded scale times the codes' sum, rounded through f16.
        scales[2u * b + 1u] = round_f16(qsum * d);
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
        var iscale = 0.0;
        if (amax != 0.0) {
            iscale = -128.0 / mx;
        }
        for (var s = 0u; s < 8u; s++) {
            var sum = 0.0;
            for (var i = base + 32u * s; i < base + 32u * s + 32u; i++) {
                let q = min(round_away(iscale * x[i]), 127.0);
                y[i] = q;
                sum += q;
            }
            scales[9u * b + 1u + s] = sum;
        }
        scales[9u * b] = select(0.0, 1.0 / iscale, amax != 0.0);
    }
}
