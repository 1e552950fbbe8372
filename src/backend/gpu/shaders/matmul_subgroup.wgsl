// y[r][o] = W[o] · x[r] (+ bias[o]): matmul.wgsl's product for adapters with subgroups
// (hardware GPUs). One workgroup per output row: its threads take consecutive sub-blocks of
// the row, so neighbouring threads read neighbouring bytes (one coalesced memory access
// on a GPU, where the thread-per-row kernel has each thread stream its own row), then sum
// with subgroupAdd and one workgroup slot per subgroup. Neither the subgroup size nor how
// threads map onto subgroups is assumed: each subgroup claims its slot with an atomic.
// Bindings and the sub-block product: matmul_common.wgsl; `enable subgroups;` comes first
// in browsers (directives must open the module).

const WG: u32 = 32u;
// Subgroups hold at least 4 threads (WebGPU's minimum), so a workgroup has at most 8.
const MAX_SLOTS: u32 = 8u;

var<workgroup> slots: atomic<u32>;
var<workgroup> partial: array<f32, MAX_SLOTS * R>;

@compute @workgroup_size(32)
fn main(
    @builtin(workgroup_id) g: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let o = g.x + g.y * p.groups_x;
    let r0 = g.z * R;
    // Uniform for the workgroup: the subgroup operations below stay in uniform control flow.
    if (o >= p.out_rows) {
        return;
    }
    let nr = min(R, p.rows - r0);
    let row = row_start(o);
    // Each thread takes 32-value sub-blocks (the k-quants' epilogue then runs per
    // sub-block, and the threads' sums meet in another order than the CPU's: close to its
    // bits, not equal).
    var acc: array<f32, R>;
    var lanes: array<vec4<f32>, R2>;
    for (var i = t; i < p.in_dim / 32u; i += WG) {
        add_block(&acc, &lanes, row, i / SUBS, i % SUBS, i % SUBS + 1u, r0, nr);
    }
    // The subgroup's first thread (subgroupElect, which wgpu's compiler lacks) claims a slot.
    let first = subgroupBroadcastFirst(lane) == lane;
    var slot = 0u;
    if (first) {
        slot = atomicAdd(&slots, 1u);
    }
    slot = subgroupBroadcastFirst(slot);
    for (var r = 0u; r < R; r++) {
        let s = subgroupAdd(total(&acc, &lanes, r));
        if (first && slot < MAX_SLOTS) {
            partial[slot * R + r] = s;
        }
    }
    workgroupBarrier();
    if (t == 0u) {
        let n = min(atomicLoad(&slots), MAX_SLOTS);
        for (var r = 0u; r < nr; r++) {
            var sum = 0.0;
            for (var s = 0u; s < n; s++) {
                sum += partial[s * R + r];
            }
            write_out(o, r0 + r, sum);
        }
    }
}
