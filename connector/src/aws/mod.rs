//! AWS access: client construction, the narrow seams extraction uses, and error classification.

pub mod config;
pub mod control;
pub mod error;
pub mod identity;
pub mod metrics;
pub mod ssec;
pub mod store;

pub use config::{AwsContext, ConfigError, ConnectionSettings};
pub use error::{AwsError, AwsErrorKind};
pub use store::{
    ByteRange, DefaultEncryptionRule, IdentityProvider, KeyDirectory, KeyInfo, ListPage, ListRequest,
    ObjectHead, ObjectStore, RangeRead, RequestStats, ResponseEncryption, SdkIdentity, SdkKeyDirectory,
    SdkObjectStore,
};
