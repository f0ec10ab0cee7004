//! Grouping objects into logical datasets.
