// What both matrix product kernels share (matmul.wgsl: a thread per weight row;
// matmul_subgroup.wgsl: a workgroup per weight row): parameters, bindings, and one 32-value
// sub-block of a weight row times up to R input rows. `deq_dot`, `block_min`, BLOCK_BYTES,
// SUBS, HAS_MIN and R come from the variant prefix.

struct Params {
    out_rows: u32,   // rows of W in this buffer
    in_dim: u32,
    rows: u32,       // input rows
    groups_x: u32,   // workgroups along x (the grid is 2-D past 65535 workgroups)
    y_stride: u32,   // output width (all of W's rows)
    y_offset: u32,   // first output column written by this buffer
    has_bias: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;
// Per 32-value activation block, ggml's q8_1 sum (used by types with a block minimum).
@group(0) @binding(5) var<storage, read> xsum: array<f32>;

// Weight row o's first byte.
fn row_start(o: u32) -> u32 {
    return o * (p.in_dim / (SUBS * 32u)) * BLOCK_BYTES;
}

// Writes weight row o · input row r (v), plus the row's bias where there is one.
fn write_out(o: u32, r: u32, v: f32) {
    var b = 0.0;
    if (p.has_bias != 0u) {
        b = bias[p.y_offset + o];
    }
    y[r * p.y_stride + p.y_offset + o] = v + b;
}

// acc[r] += sub-block i of the weight row starting at byte `row` · input row r0 + r, r < nr.
// The weights are dequantized once for all R rows; fixed trip counts let the loop unroll
// and keep `acc` in registers.
fn add_sub_block(acc: ptr<function, array<f32, R>>, row: u32, i: u32, r0: u32, nr: u32) {
    let blk = row + (i / SUBS) * BLOCK_BYTES;
    let v = deq_dot(blk, i % SUBS);
    let m = block_min(blk);
    for (var r = 0u; r < R; r++) {
        if (r < nr) {
            let xb = ((r0 + r) * p.in_dim + i * 32u) / 4u;
            var sum = 0.0;
            for (var k = 0u; k < 8u; k++) {
                sum += dot(vec4<f32>(v[4u * k], v[4u * k + 1u], v[4u * k + 2u], v[4u * k + 3u]), x[xb + k]);
            }
            if (HAS_MIN) {
                sum += m * xsum[(r0 + r) * (p.in_dim / 32u) + i];
            }
            (*acc)[r] += sum;
        }
    }
}
