//! S3 catalog connector library.
//!
//! - [`aws`]: SDK clients and the narrow seams (list, ranged get, head, bucket encryption,
//!   describe key, caller identity) that the rest of the crate uses.
//! - [`extract`]: the extraction pipeline (listing shards, grouping, inference, encryption).
//! - [`incremental`]: incremental extraction from S3 Inventory reports (find, verify, read,
//!   snapshot, diff, state).
//! - [`output`]: records (the proto contract), JSON Lines and the human summary.
//! - [`cse`]: client-side decryption (S3 Encryption Client V1/V2/V3) on the read path.
//! - [`check`]: access diagnostics (`check` command, `CheckAccess` RPC).
//! - [`serve`]: the gRPC service (tonic), a thin adapter over the same library code.
//! - [`cli`]: the command line.
//!
//! Domain logic (grouping, inference, encryption summaries) lives in `s3-connector-domain`.
#![forbid(unsafe_code)]

pub mod aws;
pub mod check;
pub mod cli;
pub mod concurrency;
pub mod cse;
pub mod extract;
pub mod incremental;
pub mod output;
pub mod sample;
pub mod serve;
