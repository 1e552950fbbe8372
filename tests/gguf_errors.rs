//! Every class of malformed GGUF gets its own typed error; no input panics or hangs.

mod common;
use candlelit::engine::Engine;
use candlelit::gguf::{Gguf, Loader};
use candlelit::Error;
use common::gguf_writer::{tiny_llama, GgufBuilder, Kv};

fn load(bytes: &[u8], known_len: bool) -> Result<Gguf, Error> {
    let mut l = Loader::new(known_len.then_some(bytes.len() as u64));
    // Odd chunk sizes, like a network stream.
    for chunk in bytes.chunks(997) {
        l.push(chunk)?;
    }
    l.finish()
}

fn set_u64(bytes: &mut [u8], at: usize, v: u64) {
    bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn the_tiny_model_is_valid_and_runs() {
    let bytes = tiny_llama().build();
    let gguf = load(&bytes, true).unwrap();
    assert_eq!(gguf.tensors.len(), 11);
    let mut e = Engine::new(gguf, None).unwrap();
    let g = e
        .generate(
            &candlelit::engine::Prompt::Text("ab".into()),
            &candlelit::engine::Request {
                max_tokens: 3,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(g.tokens.len() <= 3);
}

#[test]
fn bad_magic() {
    let mut bytes = tiny_llama().build();
    bytes[0..4].copy_from_slice(b"GGML");
    assert!(matches!(load(&bytes, true), Err(Error::BadMagic(m)) if &m == b"GGML"));
    assert!(matches!(
        load(b"<html>not a model</html>", true),
        Err(Error::BadMagic(_))
    ));
}

#[test]
fn wrong_version() {
    for v in [1u32, 4, 0xFFFF_FFFF] {
        let mut b = tiny_llama();
        b.version = v;
        assert!(
            matches!(load(&b.build(), true), Err(Error::UnsupportedVersion(x)) if x == v),
            "version {v}"
        );
    }
}

#[test]
fn absurd_counts_are_errors_not_allocations() {
    let good = tiny_llama().build();
    // Tensor count at byte 8, metadata count at byte 16.
    for (at, what) in [(8, "tensor count"), (16, "metadata count")] {
        let mut b = good.clone();
        set_u64(&mut b, at, 1 << 40);
        match load(&b, false) {
            Err(Error::AbsurdCount { what: w, count, .. }) => {
                assert_eq!(w, what);
                assert_eq!(count, 1 << 40);
            }
            other => panic!("{what}: {:?}", other.err()),
        }
    }
    // A string length of 2^40 (the first key's length, right after the counts).
    let mut b = good.clone();
    set_u64(&mut b, 24, 1 << 40);
    assert!(matches!(
        load(&b, false),
        Err(Error::AbsurdCount {
            what: "metadata key length",
            ..
        })
    ));
    // An array claiming 2^40 elements.
    let b = GgufBuilder::new().kv("x", Kv::StrArray(vec![])).build();
    let mut b2 = b.clone();
    // magic, version, two counts (24) + key length and "x" (9) + value type and element type (8).
    set_u64(&mut b2, 41, 1 << 40);
    assert!(matches!(
        load(&b2, false),
        Err(Error::AbsurdCount {
            what: "array length",
            ..
        })
    ));
}

#[test]
fn truncated_at_several_points() {
    let bytes = tiny_llama().build();
    let header_end = bytes.len() - tiny_llama().tensors.iter().map(|t| t.data.len()).sum::<usize>();
    for cut in [0, 3, 7, 20, 100, 400, header_end / 2, header_end + 10, bytes.len() - 1] {
        let part = &bytes[..cut];
        let err = load(part, false).err().unwrap_or_else(|| panic!("cut at {cut} loaded"));
        assert!(
            matches!(err, Error::Truncated(_)),
            "cut at {cut} (unknown length): {err}"
        );
        // With the true length announced, the short stream is still reported as truncated.
        let mut l = Loader::new(Some(bytes.len() as u64));
        l.push(part).ok();
        assert!(
            matches!(l.finish(), Err(Error::Truncated(_))),
            "cut at {cut} (known length)"
        );
    }
}

#[test]
fn real_model_truncated_in_its_header_and_in_its_data() {
    let bytes = std::fs::read(common::model_path(common::SMOLLM2)).unwrap();
    for cut in [4096, 1 << 20, 40 << 20, bytes.len() - 1] {
        let err = load(&bytes[..cut], false).err().unwrap();
        assert!(matches!(err, Error::Truncated(_)), "cut at {cut}: {err}");
        assert!(err.to_string().contains("truncated"), "{err}");
    }
}

#[test]
fn offsets_past_the_end() {
    let bytes = tiny_llama().build();
    // A file whose last tensor is cut off but whose length is known: caught at the header.
    let short = &bytes[..bytes.len() - 64];
    match load(short, true) {
        Err(Error::TensorOutOfBounds { name, file_len, .. }) => {
            assert_eq!(name, "output_norm.weight");
            assert_eq!(file_len, short.len() as u64);
        }
        other => panic!("{:?}", other.err()),
    }
}

#[test]
fn unknown_block_type() {
    let mut b = tiny_llama();
    b.tensors[2].type_id = 20; // IQ4_NL: not something we can compute with
    match load(&b.build(), true) {
        Err(Error::UnknownBlockType { name, type_id }) => {
            assert_eq!(name, "blk.0.attn_q.weight");
            assert_eq!(type_id, 20);
        }
        other => panic!("{:?}", other.err()),
    }
    let mut b = tiny_llama();
    b.tensors[0].type_id = 999;
    assert!(matches!(
        load(&b.build(), true),
        Err(Error::UnknownBlockType { type_id: 999, .. })
    ));
}

#[test]
fn unsupported_architecture() {
    let mut b = tiny_llama();
    b.kvs[0].1 = Kv::Str("mamba".into());
    let gguf = load(&b.build(), true).unwrap();
    match Engine::new(gguf, None) {
        Err(Error::UnsupportedArchitecture(a)) => assert_eq!(a, "mamba"),
        other => panic!("{:?}", other.err()),
    }
}

#[test]
fn missing_tensor_and_wrong_shape() {
    let mut b = tiny_llama();
    b.tensors.retain(|t| t.name != "blk.0.ffn_up.weight");
    assert!(
        matches!(Engine::new(load(&b.build(), true).unwrap(), None), Err(Error::MissingTensor(n)) if n == "blk.0.ffn_up.weight")
    );
    let mut b = tiny_llama();
    b.kvs.retain(|(k, _)| k != "llama.block_count");
    assert!(matches!(
        Engine::new(load(&b.build(), true).unwrap(), None),
        Err(Error::Metadata(_))
    ));
}

/// RoPE factors that would divide by zero, or rotate NaN, and an attention factor that
/// cannot be folded into the attention scale, are refused by name.
#[test]
fn bad_rope_factors() {
    let err = |b: GgufBuilder| match Engine::new(load(&b.build(), true).unwrap(), None) {
        Err(Error::Metadata(m)) => m,
        other => panic!("{:?}", other.err()),
    };
    // Head size 8: four factors.
    for (values, want) in [
        (vec![1.0, 0.0, 1.0, 1.0], "`rope_freqs.weight` holds 0"),
        (vec![1.0, f32::NAN, 1.0, 1.0], "`rope_freqs.weight` holds NaN"),
        (vec![1.0; 3], "`rope_freqs.weight` has 3 values, expected 4"),
    ] {
        let b = tiny_llama().f32_tensor("rope_freqs.weight", &[values.len() as u64], &values);
        assert_eq!(err(b), want);
    }
    let b = tiny_llama()
        .kv("llama.rope.scaling.attn_factor", Kv::F32(1.2))
        .kv("llama.rope.dimension_count", Kv::U32(4));
    assert!(err(b).contains("partial rotation"));
    let b = tiny_llama().kv("llama.rope.scaling.attn_factor", Kv::F32(-1.0));
    assert!(err(b).contains("attention factor -1"));
}

#[test]
fn random_corruption_never_panics() {
    let good = tiny_llama().build();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..3000 {
        let mut b = good.clone();
        for _ in 0..1 + next() % 4 {
            let at = (next() % b.len() as u64) as usize;
            b[at] = next() as u8;
        }
        let known = next() % 2 == 0;
        // Whatever the loader says, it must say it without panicking; what loads must not
        // panic the engine either.
        if let Ok(g) = load(&b, known) {
            let _ = Engine::new(g, None).and_then(|mut e| {
                e.generate(
                    &candlelit::engine::Prompt::Text("ab".into()),
                    &candlelit::engine::Request {
                        max_tokens: 2,
                        ..Default::default()
                    },
                )
            });
        }
    }
}
