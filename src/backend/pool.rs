//! The threads that share a matrix product: the calling thread plus `threads - 1` helpers.
//!
//! Why not rayon's `par_iter` for this: a decode step runs a few hundred small products
//! (SmolLM2's are 80–660 KB of weights, tens of microseconds each), and rayon's workers go to
//! sleep between them; waking a sleeping Web Worker costs tens of microseconds, about what the
//! split saves, so 2 threads decoded no faster than 1 in the browser. Here helpers spin for a
//! fraction of a millisecond after each job, long enough to catch the next product of the same
//! token, then sleep on a condition variable. Whether sharing pays is measured as it runs
//! (see `PERIOD_MS`): on a machine where another process takes a core, the pool runs alone.
//!
//! One job at a time: the thread that submits also claims tasks, and tasks are claimed one by
//! one from a shared cursor, so a helper that is descheduled does not hold up the others. A
//! second thread submitting while a job runs (tests run in parallel) runs its job alone.

#[cfg(any(feature = "threads", not(target_arch = "wasm32")))]
mod threaded {
    use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering::*};
    use std::sync::{Condvar, Mutex, OnceLock};

    /// Spins of an idle helper before it sleeps: about 0.1–0.5 ms on the machines measured (a
    /// wasm spin is one atomic load; a native one adds the CPU's pause instruction).
    #[cfg(target_arch = "wasm32")]
    const SPINS: u32 = 1 << 18;
    #[cfg(not(target_arch = "wasm32"))]
    const SPINS: u32 = 1 << 10;

    /// Whether helpers pay is measured, not assumed: every `PERIOD_MS` the pool runs jobs
    /// shared for `PROBE_MS`, then alone for `PROBE_MS`, compares the work done per
    /// millisecond, and runs until the next probe the faster way. (In blocks, not alternating
    /// jobs: helpers would fall asleep between shared jobs and make sharing look slow.) A
    /// helper that loses its core to another process holds up each job it has a task of, and
    /// the submitter loses time slices to helpers spinning: with a busy loop beside it,
    /// SmolLM2's 2-thread decode in Chromium fell from 79 tok/s to 41, below 1 thread's 52.
    const PERIOD_MS: f64 = 500.0;
    const PROBE_MS: f64 = 4.0;
    const PROBE_JOBS: u32 = 8;

    #[cfg(target_arch = "wasm32")]
    #[wasm_bindgen::prelude::wasm_bindgen]
    extern "C" {
        // Cross-origin isolated pages (the only ones with threads) time to 5 µs.
        #[wasm_bindgen(js_namespace = performance, js_name = now)]
        fn now_ms() -> f64;
    }
    #[cfg(not(target_arch = "wasm32"))]
    use crate::engine::clock::now_ms;

    type Task<'a> = &'a (dyn Fn(usize) + Sync);

    /// The cursor's fields: task index and task count (21 bits each), generation (22 bits).
    const FIELD_BITS: u32 = 21;
    const FIELD: u64 = (1 << FIELD_BITS) - 1;
    const GEN_SHIFT: u32 = 2 * FIELD_BITS;

    struct Pool {
        helpers: usize,
        /// `generation << 42 | tasks << 21 | next task`: claiming a task and checking that it
        /// belongs to the job the claimer read, and is one of that job's tasks, are one
        /// compare-and-swap. (With the count in a field of its own, a helper could read the
        /// next job's count while the cursor still showed the last job's generation, claim a
        /// task that was not there and drive `pending` below zero: a submitter then waited
        /// forever; the many-submitters test hung once in CI.)
        cursor: AtomicU64,
        /// The job's task closure (a pointer to a `Task` on the submitter's stack, alive
        /// until `pending` reaches 0).
        job: AtomicPtr<()>,
        pending: AtomicUsize,
        panicked: AtomicUsize,
        sleepers: AtomicUsize,
        sleep: Mutex<()>,
        wake: Condvar,
        submit: Mutex<Health>,
    }

    /// What the last probe measured and decided (changed only under the submit lock).
    #[derive(Default)]
    struct Health {
        probing: bool,
        /// The probe's first shared job has run.
        warm: bool,
        /// When the current choice was made (ms; 0 before the first probe).
        decided_at: f64,
        /// Work (multiply-adds), milliseconds and count of the probe's jobs: [solo, shared].
        work: [f64; 2],
        ms: [f64; 2],
        jobs: [u32; 2],
        solo: bool,
    }

    static POOL: OnceLock<Pool> = OnceLock::new();
    static SHARED_JOBS: AtomicUsize = AtomicUsize::new(0);
    static SOLO_JOBS: AtomicUsize = AtomicUsize::new(0);

    /// Jobs shared with helpers and jobs run alone (probes, and periods where helpers did not
    /// pay), since the start: what a benchmark reports.
    pub fn stats() -> [usize; 2] {
        [SHARED_JOBS.load(Relaxed), SOLO_JOBS.load(Relaxed)]
    }

    fn pool() -> &'static Pool {
        POOL.get_or_init(|| {
            let helpers = rayon::current_num_threads().saturating_sub(1);
            for _ in 0..helpers {
                // In the browser the only threads are wasm-bindgen-rayon's Web Workers: a
                // helper occupies one for good. Natively a thread of its own leaves rayon's
                // pool alone.
                #[cfg(target_arch = "wasm32")]
                rayon::spawn(|| help(pool()));
                #[cfg(not(target_arch = "wasm32"))]
                std::thread::spawn(|| help(pool()));
            }
            Pool {
                helpers,
                cursor: AtomicU64::new(0),
                job: AtomicPtr::new(std::ptr::null_mut()),
                pending: AtomicUsize::new(0),
                panicked: AtomicUsize::new(0),
                sleepers: AtomicUsize::new(0),
                sleep: Mutex::new(()),
                wake: Condvar::new(),
                submit: Mutex::new(Health::default()),
            }
        })
    }

    pub fn threads() -> usize {
        pool().helpers + 1
    }

    fn help(pool: &'static Pool) {
        let mut seen = pool.cursor.load(Acquire) >> GEN_SHIFT;
        loop {
            let mut spins = 0;
            while pool.cursor.load(Acquire) >> GEN_SHIFT == seen {
                spins += 1;
                if spins < SPINS {
                    std::hint::spin_loop();
                    continue;
                }
                // Sleep. `sleepers` goes up before the cursor is read again and the submitter
                // reads `sleepers` after publishing (both SeqCst), so one of the two sees the
                // other: no job is missed, and the notification comes under the lock.
                let mut guard = pool.sleep.lock().unwrap_or_else(|e| e.into_inner());
                pool.sleepers.fetch_add(1, SeqCst);
                while pool.cursor.load(SeqCst) >> GEN_SHIFT == seen {
                    guard = pool.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
                }
                pool.sleepers.fetch_sub(1, SeqCst);
                break;
            }
            seen = pool.cursor.load(Acquire) >> GEN_SHIFT;
            pool.work(seen);
        }
    }

    impl Pool {
        /// Claims and runs tasks of job `generation` until none are left.
        fn work(&self, generation: u64) {
            loop {
                let c = self.cursor.load(Acquire);
                let (i, tasks) = (c & FIELD, (c >> FIELD_BITS) & FIELD);
                if c >> GEN_SHIFT != generation || i >= tasks {
                    return;
                }
                let job = self.job.load(Relaxed);
                if self.cursor.compare_exchange_weak(c, c + 1, AcqRel, Relaxed).is_err() {
                    continue;
                }
                // SAFETY: the claim succeeded on this generation with task `i` unclaimed, so
                // the job is not finished and its submitter is still waiting on `pending`;
                // `job` was written before the generation was published and not since.
                let task = unsafe { *(job as *const Task) };
                let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| task(i as usize))).is_ok();
                if !ok {
                    self.panicked.fetch_add(1, Relaxed);
                }
                self.pending.fetch_sub(1, Release);
            }
        }
    }

    /// Runs `task(0..tasks)`; `work` (multiply-adds, roughly) lets the probes compare jobs.
    pub fn run(tasks: usize, work: f64, task: Task) {
        let pool = pool();
        let submit = if tasks > 1 && tasks as u64 <= FIELD && pool.helpers > 0 {
            pool.submit.try_lock().ok()
        } else {
            None
        };
        let Some(mut health) = submit else {
            (0..tasks).for_each(task);
            return;
        };
        let h = &mut *health;
        let t0 = now_ms();
        if h.decided_at == 0.0 {
            // The first jobs share: they also pay for first touches of memory and helpers
            // starting, which would make a probe now misjudge.
            h.decided_at = t0;
        } else if !h.probing && t0 - h.decided_at > PERIOD_MS {
            *h = Health {
                probing: true,
                decided_at: h.decided_at,
                ..Health::default()
            };
        }
        let probed = |h: &Health, way: usize| h.ms[way] >= PROBE_MS && h.jobs[way] >= PROBE_JOBS;
        let solo = if h.probing { probed(h, 1) } else { h.solo };
        if solo {
            SOLO_JOBS.fetch_add(1, Relaxed);
            (0..tasks).for_each(task);
        } else {
            SHARED_JOBS.fetch_add(1, Relaxed);
            share(pool, tasks, task);
        }
        if h.probing {
            let t1 = now_ms();
            let way = usize::from(!solo);
            // The shared block's first job wakes the helpers, who may have gone to sleep
            // between tokens: not counted, as in steady sharing they are awake.
            if solo || h.warm {
                h.work[way] += work;
                h.ms[way] += t1 - t0;
                h.jobs[way] += 1;
            }
            h.warm = true;
            if probed(h, 0) {
                // Solo only if clearly faster: the blocks ran different jobs (kernels differ in
                // work per millisecond), and a wrong solo costs more than a wrong share.
                h.solo = h.work[1] / h.ms[1] < 0.9 * h.work[0] / h.ms[0];
                h.probing = false;
                h.decided_at = t1;
            }
        }
    }

    fn share(pool: &Pool, tasks: usize, task: Task) {
        pool.job.store(&task as *const Task as *mut (), Relaxed);
        pool.pending.store(tasks, Relaxed);
        let generation = ((pool.cursor.load(Relaxed) >> GEN_SHIFT) + 1) & ((1 << (64 - GEN_SHIFT)) - 1);
        pool.cursor
            .store(generation << GEN_SHIFT | (tasks as u64) << FIELD_BITS, SeqCst);
        if pool.sleepers.load(SeqCst) > 0 {
            let _guard = pool.sleep.lock().unwrap_or_else(|e| e.into_inner());
            pool.wake.notify_all();
        }
        pool.work(generation);
        while pool.pending.load(Acquire) != 0 {
            std::hint::spin_loop();
        }
        if pool.panicked.swap(0, Relaxed) > 0 {
            panic!("a task of a parallel matrix product panicked");
        }
    }
}

#[cfg(any(feature = "threads", not(target_arch = "wasm32")))]
pub use threaded::{run, stats, threads};

/// The single-thread browser build.
#[cfg(not(any(feature = "threads", not(target_arch = "wasm32"))))]
pub fn run(tasks: usize, _work: f64, task: &(dyn Fn(usize) + Sync)) {
    (0..tasks).for_each(task);
}

#[cfg(not(any(feature = "threads", not(target_arch = "wasm32"))))]
pub fn threads() -> usize {
    1
}

#[cfg(not(any(feature = "threads", not(target_arch = "wasm32"))))]
pub fn stats() -> [usize; 2] {
    [0; 2]
}

/// A raw pointer that tasks may share: each task derives a slice no other task touches.
struct Shared<T>(*mut T);
unsafe impl<T: Send> Sync for Shared<T> {}
impl<T> Shared<T> {
    fn get(&self) -> *mut T {
        self.0
    }
}

/// Calls `f(i, piece)` for every `len`-long piece of `out` (the last may be shorter), `grain`
/// consecutive pieces per task, on the pool; `work` as for [`run`].
pub fn for_each_piece<T: Send>(out: &mut [T], len: usize, grain: usize, work: f64, f: impl Fn(usize, &mut [T]) + Sync) {
    let total = out.len();
    let pieces = total.div_ceil(len.max(1));
    let grain = grain.max(1);
    let base = Shared(out.as_mut_ptr());
    run(pieces.div_ceil(grain), work, &|t| {
        for i in t * grain..((t + 1) * grain).min(pieces) {
            let start = i * len;
            // SAFETY: pieces are disjoint ranges inside `out`, each given to one task once,
            // and `out` stays mutably borrowed until `run` returns.
            let piece = unsafe { std::slice::from_raw_parts_mut(base.get().add(start), len.min(total - start)) };
            f(i, piece);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_task_runs_once_and_pieces_cover_the_output() {
        for n in [0usize, 1, 2, 7, 64, 1000] {
            let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
            run(n, 1.0, &|i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "{n} tasks");
        }
        let mut out = vec![0usize; 1003];
        for_each_piece(&mut out, 10, 3, 1.0, |i, piece| {
            piece.iter_mut().for_each(|v| *v += i + 1)
        });
        assert!(out.iter().enumerate().all(|(k, v)| *v == k / 10 + 1));
    }

    #[test]
    fn many_jobs_from_many_threads_all_complete() {
        std::thread::scope(|s| {
            for t in 0..3 {
                s.spawn(move || {
                    for round in 0..2000 {
                        let sum = AtomicUsize::new(0);
                        run(5 + (round + t) % 4, 1.0, &|i| {
                            sum.fetch_add(i + 1, Ordering::Relaxed);
                        });
                        let n = 5 + (round + t) % 4;
                        assert_eq!(sum.load(Ordering::Relaxed), n * (n + 1) / 2);
                    }
                });
            }
        });
    }
}
