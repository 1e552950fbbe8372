// Appends rows of keys and values (f32, rows at positions pos0..) to a layer's cache as
// packed f16 pairs.

struct Params {
    n: u32,          // pairs to write: rows * kv_width / 2
    offset: u32,     // pos0 * kv_width / 2
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<storage, read> k: array<f32>;
@group(0) @binding(1) var<storage, read> v: array<f32>;
@group(0) @binding(2) var<storage, read_write> kc: array<u32>;
@group(0) @binding(3) var<storage, read_write> vc: array<u32>;
@group(0) @binding(4) var<uniform> p: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * 65535u * 64u;
    if (i >= p.n) {
        return;
    }
    kc[p.offset + i] = pack_f16(k[2u * i], k[2u * i + 1u]);
    vc[p.offset + i] = pack_f16(v[2u * i], v[2u * i + 1u]);
}
