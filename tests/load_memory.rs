//! Loading streams bytes straight into tensor storage: peak heap while loading stays near
//! the file size (never twice it), and chunking does not change what is loaded.

mod common;
use candlelit::gguf::Loader;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

struct Counting;
static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(l.size(), Relaxed) + l.size();
        PEAK.fetch_max(now, Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        CURRENT.fetch_sub(l.size(), Relaxed);
        System.dealloc(p, l)
    }
}

#[global_allocator]
static A: Counting = Counting;

/// The counters are process-wide: tests in this file take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn peak_heap_while_loading_is_near_the_file_size() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for name in [common::SMOLLM2, common::GEMMA3] {
        let path = common::model_path(name);
        let file_len = std::fs::metadata(&path).unwrap().len() as usize;
        let base = CURRENT.load(Relaxed);
        PEAK.store(base, Relaxed);
        let gguf = Loader::load_file(&path).unwrap();
        let peak = PEAK.load(Relaxed) - base;
        let held = CURRENT.load(Relaxed) - base;
        println!(
            "{name}: file {:.1} MB, peak heap while loading {:.1} MB ({:.3}x), held after {:.1} MB",
            file_len as f64 / 1e6,
            peak as f64 / 1e6,
            peak as f64 / file_len as f64,
            held as f64 / 1e6
        );
        // Tensors are the file; on top: the header buffer and parsed metadata (the vocabulary).
        assert!(
            peak < file_len + file_len / 10 + (32 << 20),
            "{name}: peak {peak} for a {file_len}-byte file"
        );
        assert_eq!(
            gguf.tensor_bytes() as u64,
            gguf.infos.iter().map(|t| t.n_bytes).sum::<u64>()
        );
        drop(gguf);
    }
}

#[test]
fn chunk_size_does_not_change_the_tensors() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bytes = std::fs::read(common::model_path(common::SMOLLM2)).unwrap();
    let whole = Loader::read_from(&bytes[..], Some(bytes.len() as u64)).unwrap();
    let mut l = Loader::new(None);
    let mut at = 0;
    let mut step = 1;
    while at < bytes.len() {
        // Chunk sizes from 1 byte up, ragged like a network stream.
        let n = (step * 7919 % 65_537 + 1).min(bytes.len() - at);
        l.push(&bytes[at..at + n]).unwrap();
        at += n;
        step += 1;
    }
    let chunked = l.finish().unwrap();
    assert_eq!(whole.tensors.len(), chunked.tensors.len());
    for (name, t) in &whole.tensors {
        assert_eq!(t.data().unwrap(), chunked.tensors[name].data().unwrap(), "{name}");
    }
}
