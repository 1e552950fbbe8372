// RMSNorm of every `seg`-wide segment (a row, or one head for QK-norm): one workgroup per
// segment. In place when `x` and `y` are the same data (the kernel reads before it writes).

struct Params {
    seg: u32,
    eps: f32,
    n_seg: u32,
    _p1: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> wt: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

const WG: u32 = 64u;
var<workgroup> part: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) g: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let si = g.x + g.y * 65535u;
    if (si >= p.n_seg) {
        return;
    }
    let base = si * p.seg;
    var ss = 0.0;
    for (var i = t; i < p.seg; i += WG) {
        let v = x[base + i];
        ss += v * v;
    }
    part[t] = ss;
    workgroupBarrier();
    for (var st = WG / 2u; st > 0u; st >>= 1u) {
        if (t < st) {
            part[t] += part[t + st];
        }
        workgroupBarrier();
    }
    let scale = 1.0 / sqrt(part[0] / f32(p.seg) + p.eps);
    for (var i = t; i < p.seg; i += WG) {
        y[base + i] = x[base + i] * scale * wt[i];
    }
}
