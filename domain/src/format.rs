//! Format and compression detection.
