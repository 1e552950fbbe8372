// Causal attention over the cache, one workgroup per (query row, head). The cache holds f16
// pairs packed in u32s, `[position][kv head][head_dim / 2]`. Like the CPU path (and
// llama.cpp's), the query and the softmax weights are rounded to f16 before they meet the
// cache. Scores go to `scratch` (one slot per attended position), the softmax is reduced over
// the workgroup, then each thread sums the values for its pairs of output dimensions.

struct Params {
    n_head: u32,
    n_kv_head: u32,
    head_dim: u32,
    pos0: u32,
    scale: f32,
    softcap: f32,    // 0: none
    window: u32,     // 0: none
    stride: u32,     // scratch slots per (row, head)
    zero: u32,       // always 0 (keep.wgsl)
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> kc: array<u32>;
@group(0) @binding(2) var<storage, read> vc: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> scratch: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;

const WG: u32 = 64u;
var<workgroup> red: array<f32, 64>;
// The query rounded to f16 once for all positions (src/backend/gpu/mod.rs keeps head_dim
// within it).
const MAX_HEAD_DIM: u32 = 512u;
var<workgroup> qh: array<f32, MAX_HEAD_DIM>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) g: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let h = g.x;
    let r = g.y;
    let pos = p.pos0 + r;
    let kvh = h / (p.n_head / p.n_kv_head);
    var first = 0u;
    if (p.window > 0u && pos + 1u > p.window) {
        first = pos + 1u - p.window;
    }
    let half = p.head_dim / 2u;
    let qo = (r * p.n_head + h) * p.head_dim;
    let so = (r * p.n_head + h) * p.stride;

    for (var i = t; i < p.head_dim; i += WG) {
        qh[i] = round_f16(q[qo + i]);
    }
    workgroupBarrier();
    var mx = -3.0e38;
    for (var pp = first + t; pp <= pos; pp += WG) {
        let ko = (pp * p.n_kv_head + kvh) * half;
        var d = 0.0;
        for (var i = 0u; i < half; i++) {
            let k = unpack_f16(kc[ko + i]);
            d += keep(qh[2u * i] * k.x, p.zero);
            d += keep(qh[2u * i + 1u] * k.y, p.zero);
        }
        d *= p.scale;
        if (p.softcap > 0.0) {
            d = tanh_cpu(d / p.softcap, p.zero) * p.softcap;
        }
        scratch[so + pp - first] = d;
        mx = max(mx, d);
    }
    red[t] = mx;
    workgroupBarrier();
    for (var st = WG / 2u; st > 0u; st >>= 1u) {
        if (t < st) {
            red[t] = max(red[t], red[t + st]);
        }
        workgroupBarrier();
    }
    mx = red[0];
    workgroupBarrier();
    for (var pp = first + t; pp <= pos; pp += WG) {
        scratch[so + pp - first] = exp_cpu(scratch[so + pp - first] - mx, p.zero);
    }
    // The CPU's exp, and its sum in position order (one thread; a tree over the workgroup
    // rounds differently), so that the f16 weights are the CPU's.
    storageBarrier();
    workgroupBarrier();
    if (t == 0u) {
        var sum = 0.0;
        for (var pp = first; pp <= pos; pp++) {
            sum += scratch[so + pp - first];
        }
        red[0] = sum;
    }
    workgroupBarrier();
    let total = red[0];
    for (var i = t; i < half; i += WG) {
        var a = vec2<f32>(0.0, 0.0);
        for (var pp = first; pp <= pos; pp++) {
            let wgt = round_f16(scratch[so + pp - first] / total);
            a += keep2(wgt * unpack_f16(vc[(pp * p.n_kv_head + kvh) * half + i]), p.zero);
        }
        out[qo + 2u * i] = a.x;
        out[qo + 2u * i + 1u] = a.y;
    }
}
