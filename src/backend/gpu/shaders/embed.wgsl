// Rows of the token embedding table for each id, dequantized (times `scale`); only the
// rows used are read. One thread per 32-value sub-block; a table split over several
// buffers is gathered one buffer at a time (ids outside [row0, row0 + rows) are skipped).

struct Params {
    n_ids: u32,
    dim: u32,
    row0: u32,
    rows: u32,
    scale: f32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let per_row = p.dim / 32u;
    let i = gid.x;
    if (i >= p.n_ids * per_row) {
        return;
    }
    let r = i / per_row;
    let sub = i % per_row;
    let id = ids[r];
    if (id < p.row0 || id >= p.row0 + p.rows) {
        return;
    }
    let nblk = p.dim / (SUBS * 32u);
    let b = (id - p.row0) * nblk * BLOCK_BYTES + (sub / SUBS) * BLOCK_BYTES;
    let v = deq(b, sub % SUBS);
    for (var k = 0u; k < 32u; k++) {
        y[r * p.dim + sub * 32u + k] = v[k] * p.scale;
    }
}
