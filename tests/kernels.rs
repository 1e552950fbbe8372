//! Our dot-product kernels against candle's dequantization, on random blocks of every
//! supported type and on real blocks from the test models.

mod common;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use candlelit::backend::kernels::{kernel, matmul, q8, Dot, Weights, SUPPORTED};
use candlelit::gguf::Loader;

fn lcg(seed: &mut u64) -> f32 {
    *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    ((*seed >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
}

/// Exact (f64) dot of the dequantized weight row with the dequantized activations.
fn reference(w_row: &[f32], x: &[f32], dot: Dot) -> (f64, f64) {
    let xq: Vec<f32> = match dot {
        Dot::Q8(_) => {
            let mut b = vec![];
            q8::quantize_q8(x, &mut b);
            b.iter()
                .flat_map(|b| b.qs.iter().map(move |&q| q as f32 * b.d))
                .collect()
        }
        Dot::Q8K(_) => {
            let mut b = vec![];
            q8::quantize_q8k(x, &mut b);
            b.iter()
                .flat_map(|b| b.qs.iter().map(move |&q| q as f32 * b.d))
                .collect()
        }
        Dot::F32(_) => x.to_vec(),
    };
    let exact: f64 = w_row.iter().zip(&xq).map(|(a, b)| *a as f64 * *b as f64).sum();
    let magnitude: f64 = w_row.iter().zip(&xq).map(|(a, b)| (*a as f64 * *b as f64).abs()).sum();
    (exact, magnitude)
}

fn check(name: &str, t: &QTensor, x: &[f32]) {
    let (out_dim, in_dim) = t.shape().dims2().unwrap();
    let (dot, _, _) = kernel(t.dtype(), false).unwrap_or_else(|| panic!("no kernel for {:?}", t.dtype()));
    let w = t.dequantize(&Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
    let rows = x.len() / in_dim;
    let mut out = vec![0f32; rows * out_dim];
    let data = t.data().unwrap();
    let weights = Weights {
        dtype: t.dtype(),
        data: &data,
        out_dim,
        in_dim,
        packed: false,
    };
    assert!(matmul(&weights, x, rows, &mut out, false));
    let mut worst = 0f64;
    for r in 0..rows {
        for o in (0..out_dim).step_by((out_dim / 64).max(1)) {
            let (exact, mag) = reference(&w[o], &x[r * in_dim..(r + 1) * in_dim], dot);
            let err = (out[r * out_dim + o] as f64 - exact).abs() / mag.max(1e-9);
            worst = worst.max(err);
        }
    }
    println!(
        "{name} {:?} [{out_dim}x{in_dim}] x {rows} rows: worst relative error {worst:.2e}",
        t.dtype()
    );
    // Q4_1/Q5_1 use the f16-rounded `d·Σq` of the activations for their offset term, as
    // ggml does; everything else is exact integer arithmetic up to f32 rounding.
    let tolerance = if matches!(t.dtype(), GgmlDType::Q4_1 | GgmlDType::Q5_1) {
        5e-4
    } else {
        1e-5
    };
    assert!(worst < tolerance, "{name}: relative error {worst}");
}

#[test]
fn random_blocks_of_every_type() {
    let mut seed = 7;
    let (n, k) = (48, 512);
    let w: Vec<f32> = (0..n * k).map(|_| lcg(&mut seed)).collect();
    let x: Vec<f32> = (0..3 * k).map(|_| lcg(&mut seed) * 3.0).collect();
    let wt = Tensor::from_vec(w, (n, k), &Device::Cpu).unwrap();
    for dtype in SUPPORTED {
        let q = QTensor::quantize(&wt, dtype).unwrap();
        check("random", &q, &x);
    }
}

/// llama.cpp's k-quant products (`--numerics llama-cpp`) decode the blocks right: they equal
/// the exact product of the dequantized weights and their activation codes up to f32 rounding.
#[test]
fn llama_cpp_k_quant_products_are_exact_but_for_rounding() {
    use candlelit::backend::llama_cpp;
    let mut seed = 5;
    let (n, k) = (16, 1024);
    let w: Vec<f32> = (0..n * k).map(|_| lcg(&mut seed)).collect();
    let x: Vec<f32> = (0..k).map(|_| lcg(&mut seed) * 3.0).collect();
    let wt = Tensor::from_vec(w, (n, k), &Device::Cpu).unwrap();
    let mut acts = vec![];
    llama_cpp::quantize_q8k(&x, &mut acts);
    let xq: Vec<f64> = acts
        .iter()
        .flat_map(|b| b.qs.iter().map(move |&q| q as f64 * b.d as f64))
        .collect();
    for (dtype, dot, bytes) in [
        (
            GgmlDType::Q4K,
            llama_cpp::dot_q4_k as fn(&[u8], &[q8::BlockQ8K]) -> f32,
            144,
        ),
        (GgmlDType::Q5K, llama_cpp::dot_q5_k, 176),
        (GgmlDType::Q6K, llama_cpp::dot_q6_k, 210),
    ] {
        let q = QTensor::quantize(&wt, dtype).unwrap();
        let deq = q.dequantize(&Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
        let data = q.data().unwrap();
        let row_bytes = k / 256 * bytes;
        for (o, row) in deq.iter().enumerate() {
            let exact: f64 = row.iter().zip(&xq).map(|(a, b)| *a as f64 * b).sum();
            let mag: f64 = row.iter().zip(&xq).map(|(a, b)| (*a as f64 * b).abs()).sum();
            let got = dot(&data[o * row_bytes..(o + 1) * row_bytes], &acts) as f64;
            assert!((got - exact).abs() / mag < 1e-5, "{dtype:?} row {o}: {got} vs {exact}");
        }
    }
}

#[test]
fn real_blocks_from_the_test_models() {
    let mut seed = 11;
    for (model, tensors) in [
        (
            common::SMOLLM2,
            &["blk.0.attn_q.weight", "blk.3.ffn_down.weight", "token_embd.weight"][..],
        ),
        (
            common::GEMMA3,
            &[
                "blk.0.attn_q.weight",
                "blk.0.attn_output.weight",
                "blk.0.ffn_down.weight",
                "blk.0.attn_v.weight",
            ][..],
        ),
    ] {
        let mut g = Loader::load_file(common::model_path(model)).unwrap();
        for name in tensors {
            let t = g.take(name).unwrap();
            let (out_dim, in_dim) = t.shape().dims2().unwrap();
            // Keep the big embedding tables quick: their first rows are enough.
            let t = if out_dim > 4096 {
                let bytes = t.data().unwrap();
                let row = bytes.len() / out_dim;
                let small = candle_core::quantized::QStorage::from_data(
                    std::borrow::Cow::Borrowed(&bytes[..row * 512]),
                    &Device::Cpu,
                    t.dtype(),
                )
                .unwrap();
                QTensor::new(small, (512, in_dim)).unwrap()
            } else {
                t
            };
            let x: Vec<f32> = (0..2 * in_dim).map(|_| lcg(&mut seed)).collect();
            check(name, &t, &x);
        }
    }
}

/// Products shared between threads (contiguous weight-row ranges per task, results transposed
/// back for several rows) give exactly what each weight row gives alone.
#[test]
fn shared_products_equal_row_by_row_ones() {
    use candlelit::backend::pool;
    let mut seed = 23;
    // SmolLM2's ffn_down shape: large enough to be split into several tasks.
    let (n, k) = (576, 1536);
    let w: Vec<f32> = (0..n * k).map(|_| lcg(&mut seed)).collect();
    let wt = Tensor::from_vec(w, (n, k), &Device::Cpu).unwrap();
    let shared_before = pool::stats()[0];
    for dtype in [GgmlDType::Q4_1, GgmlDType::Q4K, GgmlDType::F16] {
        let q = QTensor::quantize(&wt, dtype).unwrap();
        let data = q.data().unwrap();
        let row_bytes = data.len() / n;
        for rows in [1, 7] {
            let x: Vec<f32> = (0..rows * k).map(|_| lcg(&mut seed) * 3.0).collect();
            let all = Weights {
                dtype,
                data: &data,
                out_dim: n,
                in_dim: k,
                packed: false,
            };
            let mut out = vec![0f32; rows * n];
            assert!(matmul(&all, &x, rows, &mut out, true), "{dtype:?}");
            for o in 0..n {
                let one = Weights {
                    dtype,
                    data: &data[o * row_bytes..(o + 1) * row_bytes],
                    out_dim: 1,
                    in_dim: k,
                    packed: false,
                };
                let mut alone = vec![0f32; rows];
                assert!(matmul(&one, &x, rows, &mut alone, true));
                for r in 0..rows {
                    assert_eq!(
                        out[r * n + o].to_bits(),
                        alone[r].to_bits(),
                        "{dtype:?} rows {rows}: weight row {o}, row {r}"
                    );
                }
            }
        }
    }
    if pool::threads() > 1 {
        // Other tests may hold the pool, or a probe may have found helpers not paying on a
        // busy machine: given a few seconds, some product is shared.
        let q = QTensor::quantize(&wt, GgmlDType::Q4_1).unwrap();
        let data = q.data().unwrap();
        let all = Weights {
            dtype: GgmlDType::Q4_1,
            data: &data,
            out_dim: n,
            in_dim: k,
            packed: false,
        };
        let (x, mut out) = (vec![0.5f32; k], vec![0f32; n]);
        let t0 = std::time::Instant::now();
        while pool::stats()[0] == shared_before && t0.elapsed().as_secs() < 5 {
            matmul(&all, &x, 1, &mut out, true);
        }
        assert!(
            pool::stats()[0] > shared_before,
            "no product was shared between threads"
        );
    }
}

/// Natively the SIMD kernels (AVX2 on x86-64) must give the scalar references' bits, as the
/// browser's do: on random blocks of every type (1 and 5 rows, rows with a 1-block tail) and
/// on the test models' own blocks.
#[test]
fn fast_kernels_give_the_references_bits() {
    use candlelit::backend::kernels::{compare_with_reference, native_avx2, self_test_random};
    println!("native AVX2 kernels: {}", native_avx2());
    for seed in [1, 2, 3] {
        let results = self_test_random(seed);
        assert!(results.len() >= 12, "{results:?}");
        for (name, err) in results {
            assert_eq!(err, 0.0, "{name}, seed {seed}");
        }
    }
    let mut seed = 5;
    let mut g = Loader::load_file(common::model_path(common::SMOLLM2)).unwrap();
    for name in ["blk.0.attn_q.weight", "blk.5.ffn_down.weight", "blk.9.ffn_up.weight"] {
        let t = g.take(name).unwrap();
        let (out_dim, in_dim) = t.shape().dims2().unwrap();
        let data = t.data().unwrap();
        let w = Weights {
            dtype: t.dtype(),
            data: &data,
            out_dim,
            in_dim,
            packed: false,
        };
        let x: Vec<f32> = (0..5 * in_dim).map(|_| lcg(&mut seed)).collect();
        assert_eq!(compare_with_reference(&w, &x, 5), Some(0.0), "{name} {:?}", t.dtype());
    }
}
