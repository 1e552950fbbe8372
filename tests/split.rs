//! Split models (llama.cpp's gguf-split layout): written by `write_parts`, loaded from the
//! first part's name natively and file by file through the push loader, and every way the
//! parts can fail to make one model.

mod common;

use candlelit::engine::Engine;
use candlelit::gguf::{split, Gguf, Loader};
use candlelit::Error;
use common::gguf_writer::{tiny_llama, Kv};
use std::path::{Path, PathBuf};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("candlelit-split-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Pushes the files one after another in `chunk`-byte pieces, as the browser does.
fn push_files(files: &[Vec<u8>], chunk: usize) -> Result<Gguf, Error> {
    let mut loader = Loader::new(None);
    for (i, bytes) in files.iter().enumerate() {
        if i > 0 {
            loader.next_file(Some(bytes.len() as u64))?;
        }
        for c in bytes.chunks(chunk) {
            loader.push(c)?;
        }
    }
    loader.finish()
}

fn read_all(paths: &[PathBuf]) -> Vec<Vec<u8>> {
    paths.iter().map(|p| std::fs::read(p).expect("part")).collect()
}

fn first_logits(gguf: Gguf, ids: &[u32]) -> Vec<f32> {
    let engine = Engine::new(gguf, Some(128)).expect("engine");
    let mut cache = engine.model.new_cache();
    engine.model.forward(ids, &mut cache, true).expect("forward")
}

fn same_model(path: &Path, max_bytes: u64, expect_parts: usize) {
    let whole = Loader::load_file(path).expect("whole model");
    let dir = temp_dir(path.file_stem().and_then(|s| s.to_str()).unwrap_or("m"));
    let paths = split::write_parts(&whole, max_bytes, &dir, "model").expect("split");
    assert_eq!(paths.len(), expect_parts, "{paths:?}");
    for p in &paths {
        let len = std::fs::metadata(p).expect("part").len();
        // Only a part holding one tensor larger than the cap may exceed it.
        assert!(
            len <= max_bytes || count_tensors(p) == 1,
            "{} is {len} bytes",
            p.display()
        );
    }
    // Natively, from the first part's name.
    let parted = Loader::load_file(&paths[0]).expect("split model");
    assert_eq!(parted.infos.len(), whole.infos.len());
    for (a, b) in whole.infos.iter().zip(&parted.infos) {
        assert_eq!((&a.name, &a.dims, a.dtype), (&b.name, &b.dims, b.dtype));
    }
    assert_eq!(
        parted.metadata.str("general.architecture").unwrap(),
        whole.metadata.str("general.architecture").unwrap()
    );
    assert_eq!(
        parted.metadata.0.len(),
        whole.metadata.0.len() + 3,
        "all metadata plus split.*"
    );
    // Streamed in odd-sized chunks that straddle nothing in particular.
    let streamed = push_files(&read_all(&paths), 777_777).expect("streamed parts");
    let ids = [1u32, 504, 3458, 282, 4649, 314];
    let want = first_logits(whole, &ids);
    assert_eq!(first_logits(parted, &ids), want, "logits from the parts differ");
    assert_eq!(
        first_logits(streamed, &ids),
        want,
        "logits from the streamed parts differ"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn count_tensors(p: &Path) -> usize {
    let bytes = std::fs::read(p).expect("part");
    u64::from_le_bytes(bytes[8..16].try_into().expect("count")) as usize
}

#[test]
fn smollm2_in_three_parts_gives_the_same_logits() {
    same_model(&common::model_path(common::SMOLLM2), 40_000_000, 3);
}

#[test]
fn gemma3_in_parts_gives_the_same_logits() {
    // Its 168 MB embedding table exceeds the cap and gets a part of its own.
    same_model(&common::model_path(common::GEMMA3), 60_000_000, 4);
}

/// The tiny model in three parts, as bytes.
fn tiny_parts(dir: &Path) -> Vec<Vec<u8>> {
    let bytes = tiny_llama().build();
    let whole = Loader::read_from(&bytes[..], Some(bytes.len() as u64)).expect("tiny");
    let paths = split::write_parts(&whole, 20_000, dir, "tiny").expect("split");
    assert_eq!(paths.len(), 3);
    assert_eq!(split::part_paths(&paths[0]).expect("named as a first part"), paths);
    read_all(&paths)
}

fn split_error(r: Result<Gguf, Error>) -> String {
    match r {
        Err(Error::Split(m)) => m,
        Err(e) => panic!("expected a Split error, got {e}"),
        Ok(_) => panic!("expected a Split error, the parts loaded"),
    }
}

#[test]
fn parts_that_do_not_make_a_model_are_refused() {
    let dir = temp_dir("tiny");
    let p = tiny_parts(&dir);
    let ok = push_files(&p, 100).expect("all three in order");
    assert_eq!(ok.tensors.len(), 11);

    let m = split_error(push_files(&p[..2], 100));
    assert!(m.contains("received 2 of the model's 3 files"), "{m}");
    let m = split_error(push_files(&p[1..], 100));
    assert!(m.contains("part 2 of a split model"), "{m}");
    let m = split_error(push_files(&[p[0].clone(), p[2].clone(), p[1].clone()], 100));
    assert!(
        m.contains("expected part 2 of 3, got a file that says it is part 3 of 3"),
        "{m}"
    );
    let m = split_error(push_files(
        &[p[0].clone(), p[1].clone(), p[2].clone(), p[2].clone()],
        100,
    ));
    assert!(m.contains("has 3 file(s) but a further one was given"), "{m}");
    let plain = tiny_llama().build();
    let m = split_error(push_files(&[p[0].clone(), plain.clone()], 100));
    assert!(m.contains("file 2 of 3 is not a part of a split model"), "{m}");
    let m = split_error(push_files(&[plain.clone(), p[1].clone()], 100));
    assert!(m.contains("a further one was given"), "{m}");

    // A first part that miscounts the model's tensors.
    let miscounted = tiny_llama()
        .kv("split.no", Kv::U32(0))
        .kv("split.count", Kv::U32(1))
        .kv("split.tensors.count", Kv::U32(12))
        .build();
    let m = split_error(push_files(&[miscounted], 100));
    assert!(m.contains("hold 11 tensors, the first says the model has 12"), "{m}");

    // The same tensor in two parts.
    let dup = |no: u32| {
        let mut b = common::gguf_writer::GgufBuilder::new()
            .kv("split.no", Kv::U32(no))
            .kv("split.count", Kv::U32(2))
            .f32_tensor("t", &[4], &[1.0; 4]);
        if no == 0 {
            b = b.kv("general.architecture", Kv::Str("llama".into()));
        }
        b.build()
    };
    match push_files(&[dup(0), dup(1)], 100) {
        Err(Error::Malformed(m)) => assert!(m.contains("`t` appears twice"), "{m}"),
        Err(e) => panic!("expected Malformed, got {e}"),
        Ok(_) => panic!("a duplicated tensor loaded"),
    }

    // A truncated part is Truncated, named as such, before the next one starts.
    let mut loader = Loader::new(Some(p[0].len() as u64));
    loader.push(&p[0][..p[0].len() - 10]).expect("prefix");
    assert!(matches!(loader.next_file(None), Err(Error::Truncated(_))));

    // Natively, a missing part file is an error naming it.
    let names = split::part_paths(&dir.join("tiny-00001-of-00003.gguf")).expect("names");
    std::fs::remove_file(&names[2]).expect("remove");
    let e = Loader::load_file(&names[0])
        .err()
        .expect("a missing part must fail")
        .to_string();
    assert!(e.contains("tiny-00003-of-00003.gguf"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
