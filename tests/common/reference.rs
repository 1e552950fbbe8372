//! Comparison of a model's logits with llama.cpp's fixtures (scripts/make_fixtures.py).

use super::ids;
use candlelit::backend::llama_cpp::use_llama_cpp_numerics;
use candlelit::backend::Backend;
use candlelit::model::Decoder;
use std::sync::Mutex;

/// Runs `f` with the CPU computing as llama.cpp's portable build does (`llama_cpp`) or as
/// the engine does. The setting is the process's, so the tests that depend on it take turns.
pub fn with_numerics<T>(llama_cpp: bool, f: impl FnOnce() -> T) -> T {
    static TURN: Mutex<()> = Mutex::new(());
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    use_llama_cpp_numerics(llama_cpp);
    let out = f();
    use_llama_cpp_numerics(false);
    out
}

pub fn argmax(x: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in x.iter().enumerate() {
        if *v > x[best] {
            best = i;
        }
    }
    best as u32
}

/// Logit differences below this are near-ties: llama.cpp disagrees with itself (batched vs
/// token-by-token, recorded as `self_agreement` in the fixture) at exactly such positions.
pub const NEAR_TIE: f32 = 0.5;

/// Compares `model` with llama.cpp's fixture `fx`: teacher-forced argmax at every position
/// (a disagreement must be a near-tie on both sides), the mean logit difference on
/// llama.cpp's top 8, and the first 16 greedy tokens.
pub fn check_logits<B: Backend>(name: &str, model: &Decoder<B>, fx: &serde_json::Value) -> Agreement {
    let vocab = model.cfg.vocab_size;
    let (mut agree_all, mut total_all, mut diff_all, mut diff_all_n) = (0, 0, 0.0f32, 0);
    let mut greedy_parted = 0;
    for case in fx["logits"].as_array().unwrap() {
        let label: String = case["prompt"].as_str().unwrap().chars().take(24).collect();
        let prompt = ids(&case["prompt_ids"]);
        let greedy = ids(&case["greedy"]);
        let want = ids(&case["argmax"]);
        let top: Vec<Vec<(u32, f32)>> = case["top"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                row.as_array()
                    .unwrap()
                    .iter()
                    .map(|p| (p[0].as_u64().unwrap() as u32, p[1].as_f64().unwrap() as f32))
                    .collect()
            })
            .collect();

        // Teacher-forced: the whole sequence in one pass, argmax at every position.
        let seq: Vec<u32> = prompt.iter().chain(&greedy).copied().collect();
        let mut cache = model.new_cache();
        let logits = model.forward(&seq, &mut cache, true).unwrap();
        let rows: Vec<&[f32]> = logits.chunks_exact(vocab).collect();
        let (mut agree, mut diff_sum, mut diff_n) = (0, 0.0f32, 0);
        for p in prompt.len() - 1..seq.len() {
            let mine = argmax(rows[p]);
            let max = rows[p][mine as usize];
            for &(id, ref_logit) in &top[p] {
                diff_sum += (rows[p][id as usize] - ref_logit).abs();
                diff_n += 1;
            }
            if mine == want[p] {
                agree += 1;
                continue;
            }
            // A disagreement must be a near-tie on both sides, or it is a bug.
            let ref_max = top[p][0].1;
            let mine_in_ref = top[p].iter().find(|(id, _)| *id == mine).map(|(_, l)| *l);
            assert!(
                max - rows[p][want[p] as usize] < NEAR_TIE && mine_in_ref.is_some_and(|l| ref_max - l < NEAR_TIE),
                "{name} {label:?} position {p}: we pick {mine}, llama.cpp {} and it is not a near-tie (ours {:.3} vs {:.3}; llama.cpp's logit for ours {mine_in_ref:?} vs {ref_max:.3})",
                want[p],
                max,
                rows[p][want[p] as usize]
            );
        }
        let n = seq.len() - (prompt.len() - 1);
        let mean_diff = diff_sum / diff_n as f32;
        println!(
            "{name} {label:?}: teacher-forced argmax agreement {agree}/{n} = {:.3} (llama.cpp self-agreement {}), mean |logit diff| on llama.cpp's top-8 = {mean_diff:.3}",
            agree as f64 / n as f64,
            case["self_agreement"]
        );
        assert!(mean_diff < 0.6, "{name}: logits differ by {mean_diff} on average");
        agree_all += agree;
        diff_all += diff_sum;
        diff_all_n += diff_n;
        total_all += n;

        // Free-running greedy decode, step by step through the cache: identical to llama.cpp's
        // tokens for the first 16, unless llama.cpp's own top two are a near-tie before that.
        let mut cache = model.new_cache();
        let mut last = model.forward(&prompt, &mut cache, false).unwrap();
        for (i, &expected) in greedy.iter().take(16).enumerate() {
            let t = argmax(&last);
            let p = prompt.len() - 1 + i;
            if t != expected {
                let margin = top[p][0].1 - top[p][1].1;
                assert!(
                    margin < NEAR_TIE,
                    "{name} {label:?}: greedy token {i} is {t}, llama.cpp {expected} (its margin {margin:.3})"
                );
                println!("{name} {label:?}: greedy paths part at token {i}, a near-tie (llama.cpp margin {margin:.3})");
                greedy_parted += 1;
                break;
            }
            last = model.forward(&[t], &mut cache, false).unwrap();
        }
    }
    let rate = agree_all as f64 / total_all as f64;
    let mean_diff = diff_all / diff_all_n as f32;
    println!("{name}: aggregate teacher-forced agreement {agree_all}/{total_all} = {rate:.3}, mean |logit diff| {mean_diff:.4}");
    Agreement {
        rate,
        mean_diff,
        greedy_parted,
    }
}

/// What close agreement with llama.cpp is where activation quantization does not blur it
/// (weights in F32): nearly every argmax, and logits within a few hundredths.
pub const CLOSE_AGREEMENT: f64 = 0.99;
pub const CLOSE_MEAN_DIFF: f32 = 0.05;

impl Agreement {
    /// Asserts close agreement (see [`CLOSE_AGREEMENT`]) for `label`.
    pub fn assert_close(&self, label: &str) {
        assert!(
            self.rate >= CLOSE_AGREEMENT,
            "{label}: aggregate agreement {:.3}",
            self.rate
        );
        assert!(
            self.mean_diff < CLOSE_MEAN_DIFF,
            "{label}: logits differ from llama.cpp's by {:.3} on average",
            self.mean_diff
        );
    }
}

pub struct Agreement {
    /// Teacher-forced argmax agreement over all positions of all prompts.
    pub rate: f64,
    /// Mean |logit difference| on llama.cpp's top 8.
    pub mean_diff: f32,
    /// Prompts whose first 16 greedy tokens were not all llama.cpp's (at a near-tie).
    pub greedy_parted: usize,
}
