// Element-wise operations, one thread per element (the grid is 2-D for long vectors).

struct Params {
    n: u32,
    a: u32,          // op-specific: width of a row's part, or the activation
    b: u32,
    c: u32,
    f: f32,
    zero: u32,       // always 0 (keep.wgsl)
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

fn index(gid: vec3<u32>) -> u32 {
    return gid.x + gid.y * 65535u * 64u;
}

// The CPU's activations step for step (scalar.rs `silu`, `gelu_by_exp`), with its exp.
fn act(v: f32) -> f32 {
    if (p.a == 0u) {
        return v / (1.0 + exp_cpu(-v, p.zero));
    }
    // GELU, tanh approximation (what llama.cpp uses for Gemma), tanh(t) = 1 - 2 / (e^2t + 1).
    let z = p.zero;
    let t = 0.7978846 * (v + keep(keep(keep(0.044715 * v, z) * v, z) * v, z));
    let tanh = 1.0 - 2.0 / (exp_cpu(2.0 * t, z) + 1.0);
    return keep(0.5 * v, z) * (1.0 + keep(tanh, z));
}

@compute @workgroup_size(64)
fn add(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if (i < p.n) {
        x[i] += y[i];
    }
}

// x = act(x) * y
@compute @workgroup_size(64)
fn gate(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if (i < p.n) {
        x[i] = act(x[i]) * y[i];
    }
}

// y holds rows of [gate | up] (width 2 * b); x gets rows of act(gate) * up (width b).
@compute @workgroup_size(64)
fn gate_fused(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if (i < p.n) {
        let r = i / p.b;
        let j = i % p.b;
        x[i] = act(y[r * 2u * p.b + j]) * y[r * 2u * p.b + p.b + j];
    }
}

// x gets columns [c, c + b) of y's rows of width a.
@compute @workgroup_size(64)
fn columns(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if (i < p.n) {
        x[i] = y[(i / p.b) * p.a + p.c + i % p.b];
    }
}

@compute @workgroup_size(64)
fn scale(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if (i < p.n) {
        x[i] = x[i] * p.f;
    }
}

@compute @workgroup_size(64)
fn softcap(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if (i < p.n) {
        x[i] = tanh_cpu(x[i] / p.f, p.zero) * p.f;
    }
}
