// The CPU's float arithmetic on the GPU, step for step: Rust rounds every operation as it is
// written, a shader compiler need not. Mesa's regroups float additions around constants
// (`(p + r) + 1` became `p + (r + 1)`, `acc + (p + m)` became `(acc + p) + m`) and may fuse a
// product into the addition after it (one rounding instead of two); others fuse freely.
// `keep(v, z)` is `v` in a form the compiler cannot see through: `z` is a uniform that is
// always 0, so neither the XOR nor what it hides can be folded into its neighbours.
fn keep(v: f32, z: u32) -> f32 {
    return bitcast<f32>(bitcast<u32>(v) ^ z);
}

fn keep2(v: vec2<f32>, z: u32) -> vec2<f32> {
    return bitcast<vec2<f32>>(bitcast<vec2<u32>>(v) ^ vec2<u32>(z));
}

fn keep4(v: vec4<f32>, z: u32) -> vec4<f32> {
    return bitcast<vec4<f32>>(bitcast<vec4<u32>>(v) ^ vec4<u32>(z));
}
