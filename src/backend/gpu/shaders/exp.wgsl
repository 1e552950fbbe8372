// e^x by the CPU's steps (src/backend/kernels/scalar.rs `exp`, Cephes' expf: the same
// constants, the same order), so that softmax weights and activation gates are the CPU's
// bits; WGSL's exp() is an approximation that differs between drivers. `z`: see keep.wgsl.

fn exp_cpu(x0: f32, z: u32) -> f32 {
    let x = clamp(x0, -87.33, 88.37);
    let n = floor(keep(x * 1.4426950216293335, z) + 0.5);
    let r = (x - keep(n * 0.6933594, z)) - keep(n * -2.1219444e-4, z);
    var q = 1.9875691e-4;
    q = keep(q * r, z) + 1.398200e-3;
    q = keep(q * r, z) + 8.333452e-3;
    q = keep(q * r, z) + 4.1665796e-2;
    q = keep(q * r, z) + 0.16666665;
    q = keep(q * r, z) + 0.5;
    let y = keep(keep(q * (r * r), z) + r, z) + 1.0;
    return y * bitcast<f32>(u32(i32(n) + 127) << 23u);
}

// tanh by the CPU's steps (scalar.rs `tanh`): sign(x) · (1 − e) / (1 + e), e = e^−2|x|.
fn tanh_cpu(x: f32, z: u32) -> f32 {
    let e = exp_cpu(-2.0 * abs(x), z);
    let t = (1.0 - e) / (1.0 + e);
    return select(t, -t, x < 0.0);
}
