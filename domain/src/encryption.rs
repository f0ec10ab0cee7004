//! Per-dataset encryption summaries.
