// What both matrix product kernels share (matmul.wgsl: a thread per weight row;
// matmul_subgroup.wgsl: a workgroup per weight row): parameters, bindings, and the product
// of sub-blocks of a weight row with up to R input rows. The variant prefix names the block
// type's functions (`codes`, `sub_scales`, `block_term`, `deq`) and constants.
//
// The arithmetic is the CPU kernels' (src/backend/kernels/scalar.rs), so that a thread that
// runs a whole row gets the CPU's bits: the activations arrive as 8-bit codes (exact small
// integers in f32) with their block's scale; the codes' products are summed exactly (every
// partial sum is an integer below 2^24) and weighted by the sub-blocks' integer scales (in
// f32 while that is exact, then in i32); only then does the float epilogue of the block run,
// in the CPU's order, added to one running sum in block order. F16/BF16/F32 weights meet unrounded activations in eight
// running sums (the CPU's lanes), added up in lane order at the end.

struct Params {
    out_rows: u32,   // rows of W in this buffer
    in_dim: u32,
    rows: u32,       // input rows
    groups_x: u32,   // workgroups along x (the grid is 2-D past 65535 workgroups)
    y_stride: u32,   // output width (all of W's rows)
    y_offset: u32,   // first output column written by this buffer
    has_bias: u32,
    zero: u32,       // always 0 (keep.wgsl)
}

@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;
// Per activation block (quantize_act.wgsl): a 32-value block's scale d and ggml's q8_1 sum s
// (two slots), a 256-value block's d and its sub-blocks' sums of codes (nine).
@group(0) @binding(5) var<storage, read> xscale: array<f32>;

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

fn quad(v: array<f32, 32>, k: u32) -> vec4<f32> {
    return vec4<f32>(v[4u * k], v[4u * k + 1u], v[4u * k + 2u], v[4u * k + 3u]);
}

// Sub-blocks s0..s1 of weight block `blk` (of the row starting at byte `row`) · input rows
// r0 + r, r < nr: quantized types add the block's term for those sub-blocks to acc[r]; float
// types add into the eight running sums lanes[2r], lanes[2r + 1]. The weights are decoded
// once for all R rows; fixed trip counts let the loops unroll and keep the sums in registers.
fn add_block(
    acc: ptr<function, array<f32, R>>,
    lanes: ptr<function, array<vec4<f32>, R2>>,
    row: u32,
    blk: u32,
    s0: u32,
    s1: u32,
    r0: u32,
    nr: u32,
) {
    let b = row + blk * BLOCK_BYTES;
    if (FLOAT) {
        let v = deq(b, 0u);
        for (var r = 0u; r < R; r++) {
            if (r < nr) {
                let xb = ((r0 + r) * p.in_dim + blk * 32u) / 4u;
                for (var k = 0u; k < 4u; k++) {
                    (*lanes)[2u * r] += keep4(quad(v, 2u * k) * x[xb + 2u * k], p.zero);
                    (*lanes)[2u * r + 1u] += keep4(quad(v, 2u * k + 1u) * x[xb + 2u * k + 1u], p.zero);
                }
            }
        }
        return;
    }
    // The block's float scales, read once for all rows.
    let bs = block_scales(b);
    if (SUBS == 1u) {
        // 32-value blocks: the sum of the codes' products is an integer below 2^24, exact.
        let c = codes(b, 0u);
        for (var r = 0u; r < R; r++) {
            if (r < nr) {
                let xb = ((r0 + r) * p.in_dim + blk * 32u) / 4u;
                var lo = 0.0;
                var hi = 0.0;
                for (var k = 0u; k < 4u; k++) {
                    lo += dot(quad(c, k), x[xb + k]);
                    hi += dot(quad(c, k + 4u), x[xb + k + 4u]);
                }
                let xs = 2u * ((r0 + r) * (p.in_dim / 32u) + blk);
                (*acc)[r] += keep(block_term(bs, lo + hi, 0.0, xscale[xs], xscale[xs + 1u], p.zero), p.zero);
            }
        }
        return;
    }
    // k-quants: a sub-block's scaled integer sums are added in f32 while that stays exact
    // (below 2^24: SUMS_EXACT sub-blocks at a time, from the types' largest codes and
    // scales), then in i32: fewer conversions than one per sub-block, and the same integers.
    var si: array<i32, R>;
    var sf: array<f32, R>;
    var sm: array<f32, R>;
    for (var s = s0; s < s1; s++) {
        let c = codes(b, s);
        // Integer weights of the sub-block's first and last 16 products, and of its
        // activations' sum (the k-quants' minimum).
        let sc = sub_scales(b, s);
        for (var r = 0u; r < R; r++) {
            if (r < nr) {
                let xb = ((r0 + r) * p.in_dim + (blk * SUBS + s) * 32u) / 4u;
                var lo = 0.0;
                var hi = 0.0;
                for (var k = 0u; k < 4u; k++) {
                    lo += dot(quad(c, k), x[xb + k]);
                    hi += dot(quad(c, k + 4u), x[xb + k + 4u]);
                }
                sf[r] += lo * f32(sc.x) + hi * f32(sc.y);
                if ((s + 1u) % SUMS_EXACT == 0u || s + 1u == s1) {
                    si[r] += i32(sf[r]);
                    sf[r] = 0.0;
                }
                if (USES_ASUM) {
                    // Below 2^24 for a whole block: 8 · 63 · 32 · 128.
                    sm[r] += xscale[9u * ((r0 + r) * (p.in_dim / 256u) + blk) + 1u + s] * f32(sc.z);
                }
            }
        }
    }
    for (var r = 0u; r < R; r++) {
        if (r < nr) {
            let xs = 9u * ((r0 + r) * (p.in_dim / 256u) + blk);
            (*acc)[r] += keep(block_term(bs, f32(si[r]), sm[r], xscale[xs], 0.0, p.zero), p.zero);
        }
    }
}

// Row r's result: its running sum, or for float types its eight lanes added in lane order.
fn total(acc: ptr<function, array<f32, R>>, lanes: ptr<function, array<vec4<f32>, R2>>, r: u32) -> f32 {
    if (FLOAT) {
        let a = (*lanes)[2u * r];
        let b = (*lanes)[2u * r + 1u];
        return ((((((a.x + a.y) + a.z) + a.w) + b.x) + b.y) + b.z) + b.w;
    }
    return (*acc)[r];
}
