//! Schema inference from bounded byte ranges.
