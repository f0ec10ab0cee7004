//! Inventory-report forwarding Lambda.
//!
//! Skeleton only: the handler (verify `manifest.json` against `manifest.checksum`, copy into the
//! destination bucket under SSE-KMS, advance the `latest` pointer) arrives with its own issue.
//! It will reuse the manifest parsing of `s3-connector-domain`.
#![forbid(unsafe_code)]
