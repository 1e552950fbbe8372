// RMSNorm of every `seg`-wide segment (a row, or one head for QK-norm) into a fresh buffer:
// one workgroup per segment, the CPU's arithmetic in its order (src/backend/cpu.rs).

struct Params {
    seg: u32,
    eps: f32,
    n_seg: u32,
    zero: u32,       // always 0 (keep.wgsl)
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> wt: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

const WG: u32 = 64u;

// One thread sums the squares in element order, as the CPU does (a tree over the workgroup
// rounds differently), and hands the scale to the others.
var<workgroup> scale_of_segment: f32;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) g: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let si = g.x + g.y * 65535u;
    if (si >= p.n_seg) {
        return;
    }
    let base = si * p.seg;
    if (t == 0u) {
        var ss = 0.0;
        for (var i = 0u; i < p.seg; i++) {
            let v = x[base + i];
            ss += keep(v * v, p.zero);
        }
        scale_of_segment = 1.0 / sqrt(ss / f32(p.seg) + p.eps);
    }
    workgroupBarrier();
    let scale = scale_of_segment;
    for (var i = t; i < p.seg; i += WG) {
        y[base + i] = x[base + i] * scale * wt[i];
    }
}
