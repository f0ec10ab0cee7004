//! One extraction as a stream of versioned records: what both the CLI (JSON Lines) and the gRPC
//! service (`ExtractMetadata`) consume, so the two cannot drift apart.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use s3_connector_proto::v1 as pb;
use tokio::sync::mpsc;

use crate::aws::RequestStats;
use crate::extract::{ExtractError, ExtractScope, Extractor, Progress, RunOutcome};
use crate::output::records;

/// A fresh run identifier (64 random bits, hex).
pub fn new_run_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A progress record from the live counters.
pub fn progress_record(run_id: &str, progress: &Progress) -> pb::ExtractRecord {
    records::envelope(
        run_id,
        pb::extract_record::Record::Progress(pb::ProgressRecord {
            objects_listed: progress.objects_listed.load(Ordering::Relaxed),
            datasets_done: progress.datasets_done.load(Ordering::Relaxed),
            buckets_done: progress.buckets_done.load(Ordering::Relaxed),
        }),
    )
}

/// Runs the extraction and sends its records to `sink`: buckets, datasets and problems as they
/// are ready, a progress record every `progress_every` (when given), and the summary last.
///
/// The sink is bounded: a slow consumer slows the extraction instead of growing memory. When
/// the consumer goes away the run stops with [`ExtractError::OutputClosed`].
///
/// Takes its inputs by value so that the future is `Send + 'static` and can be spawned.
pub async fn extract_records(
    extractor: Arc<Extractor>,
    scope: Arc<ExtractScope>,
    run_id: Arc<str>,
    stats: Arc<RequestStats>,
    progress_every: Option<Duration>,
    sink: mpsc::Sender<pb::ExtractRecord>,
) -> Result<RunOutcome, ExtractError> {
    let started_ms = now_ms();
    let (events_tx, mut events_rx) = mpsc::channel(16);
    let progress = extractor.progress();
    let forward_sink = sink.clone();
    let forward_run_id = run_id.clone();
    // `move`: when forwarding stops (consumer gone), the event receiver is dropped with it, so
    // the extraction's next send fails and the run ends instead of waiting forever.
    let forward = async move {
        let mut ticker = progress_every.map(|every| {
            let mut t = tokio::time::interval(every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            t
        });
        loop {
            let record = tokio::select! {
                event = events_rx.recv() => match event {
                    Some(event) => records::event_record(&forward_run_id, &event),
                    None => return Ok(()),
                },
                _ = async {
                    match ticker.as_mut() {
                        Some(t) => {
                            t.tick().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                } => progress_record(&forward_run_id, &progress),
            };
            forward_sink.send(record).await.map_err(|_| ExtractError::OutputClosed)?;
        }
    };
    let (outcome, forwarded) = tokio::join!(extractor.run(&scope, events_tx), forward);
    forwarded?;
    let outcome = outcome?;
    let summary = records::summary_record(
        &run_id,
        &outcome,
        &stats.snapshot(),
        stats.bytes_fetched(),
        started_ms,
        now_ms(),
    );
    sink.send(summary).await.map_err(|_| ExtractError::OutputClosed)?;
    Ok(outcome)
}
