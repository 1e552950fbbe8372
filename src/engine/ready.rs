//! The engine's awaited forms (scoring, the recipes) written once, for every backend: the
//! browser's GPU must be awaited, while the CPU (and the GPU natively, which waits for the
//! device inside its read) has every read at once, so there one poll runs them to the end.

use crate::error::{Error, Result};
use std::future::Future;
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};

/// Awaited between two steps of scoring and of the recipes: the browser's worker yields to
/// its event loop there, so that a cancel message can arrive, and answers whether to stop.
pub type Pause = Box<dyn Fn() -> Pin<Box<dyn Future<Output = bool>>>>;

/// Runs `work` to its end when none of its reads has to wait; a read that would have to
/// (the browser's GPU) is an error telling the caller to await the work instead.
pub fn run_now<T>(work: impl Future<Output = Result<T>>) -> Result<T> {
    let mut work = pin!(work);
    match work.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(r) => r,
        Poll::Pending => Err(Error::InvalidRequest(
            "this backend's reads must be awaited: use the async form".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read that has to wait once, as the browser's GPU does.
    struct WaitsOnce(bool);

    impl Future for WaitsOnce {
        type Output = Result<u32>;
        fn poll(mut self: std::pin::Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
            if self.0 {
                Poll::Ready(Ok(7))
            } else {
                self.0 = true;
                Poll::Pending
            }
        }
    }

    #[test]
    fn work_that_must_wait_is_an_error_and_ready_work_runs() {
        let err = run_now(WaitsOnce(false)).unwrap_err();
        assert!(err.to_string().contains("must be awaited"), "{err}");
        assert_eq!(run_now(async { Ok(WaitsOnce(true).await? + 1) }).unwrap(), 8);
    }
}
