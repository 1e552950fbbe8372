// Rotary position embedding. The cosines and sines come from the CPU (`cs[row][i]`), computed
// exactly as the CPU path does, so both backends rotate by the same angles.

struct Params {
    total: u32,      // rows * n_heads * half
    n_heads: u32,
    head_dim: u32,
    half: u32,
    interleaved: u32,
    zero: u32,       // always 0 (keep.wgsl)
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> cs: array<vec2<f32>>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let idx = gid.x + gid.y * 65535u * 64u;
    if (idx >= p.total) {
        return;
    }
    let i = idx % p.half;
    let rh = idx / p.half;
    let r = rh / p.n_heads;
    let base = rh * p.head_dim;
    var a = base + i;
    var b = base + i + p.half;
    if (p.interleaved != 0u) {
        a = base + 2u * i;
        b = a + 1u;
    }
    let c = cs[r * p.half + i];
    let x0 = x[a];
    let x1 = x[b];
    x[a] = keep(x0 * c.x, p.zero) - keep(x1 * c.y, p.zero);
    x[b] = keep(x0 * c.y, p.zero) + keep(x1 * c.x, p.zero);
}
