//! Time and entropy that work natively and in the browser
//! (`std::time::Instant` panics on wasm32-unknown-unknown).

/// Milliseconds from an arbitrary origin.
#[cfg(not(target_arch = "wasm32"))]
pub fn now_ms() -> f64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed().as_secs_f64() * 1000.0
}

#[cfg(target_arch = "wasm32")]
pub fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// A seed for requests that did not ask for one.
#[cfg(not(target_arch = "wasm32"))]
pub fn entropy() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(now_ms().to_bits())
}

#[cfg(target_arch = "wasm32")]
pub fn entropy() -> u64 {
    (js_sys::Math::random() * (u64::MAX as f64)) as u64 ^ js_sys::Date::now().to_bits()
}
