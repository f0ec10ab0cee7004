//! S3 catalog connector library.
#![forbid(unsafe_code)]
