//! Output adapters: versioned records, JSON Lines and the human summary.

pub mod changes;
pub mod jsonl;
pub mod records;
pub mod stream;
pub mod summary;
