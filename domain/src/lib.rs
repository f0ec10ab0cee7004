//! Domain logic of the S3 catalog connector.
//!
//! Everything here is pure: it works on object keys, listing metadata and byte slices that the
//! caller fetched. It knows nothing of the AWS SDK, gRPC or the command line, so it can be
//! tested with tables and property tests, and reused by the Lambda and the inventory engine.
#![forbid(unsafe_code)]

pub mod cse;
pub mod dataset;
pub mod encryption;
pub mod format;
pub mod inventory;
pub mod model;
pub mod policy;
pub mod sample;
pub mod schema;
