//! Seeded generator of S3 Inventory report pairs (day 1, day 2) in AWS's layout and formats,
//! with the object-level changes a correct diff must find.
//!
//! Every object is a pure function of (seed, index, day) — see [`model`] — so reports of any
//! size stream out without holding the universe in memory, and the expected changes are
//! computed independently of the code under test.

pub mod model;
pub mod report;

pub use model::{Day, Delta, ExpectedChanges, ObjectState, Universe, VersionRow};
pub use report::{ReportFormat, ReportSpec, ReportSummary, Sink, form_url_encode, iso_millis};
