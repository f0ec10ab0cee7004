//! Bounded concurrency over futures built up front.
//!
//! Callers build their futures in plain loops and hand them over as a `Vec`, instead of
//! `stream::iter(..).map(closure).buffer_unordered(n)`: futures made by closures over borrowed
//! items make the enclosing future fail rustc's `Send` check once it is spawned (the gRPC
//! service spawns extractions and checks; rust-lang/rust#110338). Futures are lazy, so building
//! them all first costs only their (small) state.

use std::future::Future;

use futures::stream::{FuturesOrdered, FuturesUnordered, StreamExt};

/// Runs `futures` with at most `limit` in flight; results in input order.
pub async fn in_order<F: Future>(futures: Vec<F>, limit: usize) -> Vec<F::Output> {
    let mut pending = futures.into_iter();
    let mut running = FuturesOrdered::new();
    let mut out = Vec::with_capacity(pending.len());
    loop {
        while running.len() < limit.max(1) {
            let Some(next) = pending.next() else { break };
            running.push_back(next);
        }
        match running.next().await {
            Some(result) => out.push(result),
            None => return out,
        }
    }
}

/// Runs `futures` with at most `limit` in flight; results in completion order.
pub async fn unordered<F: Future>(futures: Vec<F>, limit: usize) -> Vec<F::Output> {
    let mut pending = futures.into_iter();
    let mut running = FuturesUnordered::new();
    let mut out = Vec::with_capacity(pending.len());
    loop {
        while running.len() < limit.max(1) {
            let Some(next) = pending.next() else { break };
            running.push(next);
        }
        match running.next().await {
            Some(result) => out.push(result),
            None => return out,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn never_more_than_the_limit_in_flight_and_order_kept() {
        let live = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let mut futures = Vec::new();
        for i in 0..20usize {
            let (live, peak) = (&live, &peak);
            futures.push(async move {
                let now = live.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::task::yield_now().await;
                live.fetch_sub(1, Ordering::SeqCst);
                i
            });
        }
        let out = in_order(futures, 3).await;
        assert_eq!(out, (0..20).collect::<Vec<_>>());
        assert!(peak.load(Ordering::SeqCst) <= 3);
        let mut futures = Vec::new();
        for i in 0..5usize {
            futures.push(async move { i });
        }
        let mut out = unordered(futures, 2).await;
        out.sort_unstable();
        assert_eq!(out, vec![0, 1, 2, 3, 4]);
    }
}
