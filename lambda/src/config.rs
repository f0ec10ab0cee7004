//! Configuration from environment variables, validated once at cold start.
//!
//! Every error names the variable at fault, so a misconfigured function fails its first
//! invocation with a message that says what to fix.

use std::fmt;
use std::num::NonZeroUsize;

/// Destination bucket (required).
pub const DEST_BUCKET: &str = "DEST_BUCKET";
/// Key prefix in the destination bucket (optional, default: the bucket root).
pub const DEST_PREFIX: &str = "DEST_PREFIX";
/// Server-side encryption of the copies: `aws:kms` (default) or `AES256`.
pub const DEST_SSE: &str = "DEST_SSE";
/// Key ARN of the destination's KMS key ("key B"); required with `aws:kms`.
pub const DEST_KMS_KEY_ARN: &str = "DEST_KMS_KEY_ARN";
/// `true` (default) or `false`: S3 Bucket Key for the SSE-KMS copies.
pub const DEST_BUCKET_KEY_ENABLED: &str = "DEST_BUCKET_KEY_ENABLED";
/// Name of the per-(source bucket, configuration) pointer object (default `latest.json`).
pub const LATEST_POINTER_NAME: &str = "LATEST_POINTER_NAME";
/// Records handled at once within one invocation (default 4, at most 32).
pub const MAX_CONCURRENCY: &str = "MAX_CONCURRENCY";

const DEFAULT_POINTER_NAME: &str = "latest.json";
const DEFAULT_MAX_CONCURRENCY: usize = 4;
const MAX_MAX_CONCURRENCY: usize = 32;

/// A variable that is missing or invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {variable}: {problem}")]
pub struct ConfigError {
    /// The variable's name.
    pub variable: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl ConfigError {
    fn new(variable: &'static str, problem: impl Into<String>) -> ConfigError {
        ConfigError { variable, problem: problem.into() }
    }
}

/// How the copies are encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestinationEncryption {
    /// SSE-KMS under a customer managed key.
    Kms {
        /// The key ARN (`arn:<partition>:kms:<region>:<account>:key/<id>`).
        key_arn: String,
        /// Whether S3 Bucket Keys are used (fewer KMS calls; context is the bucket ARN).
        bucket_key_enabled: bool,
    },
    /// SSE-S3 (the destination holds no KMS key).
    S3Managed,
}

/// Validated configuration. Holds no secrets (names and ARNs only), so `Debug` is derived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Destination bucket name.
    pub dest_bucket: String,
    /// Destination prefix: empty, or ending with `/`.
    pub dest_prefix: String,
    /// Encryption of everything the function writes.
    pub encryption: DestinationEncryption,
    /// File name of the `latest` pointer inside `<prefix><source-bucket>/<config-id>/`.
    pub pointer_name: String,
    /// Records handled concurrently.
    pub max_concurrency: NonZeroUsize,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup` (unit tests pass a map). Empty values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());

        let dest_bucket = get(DEST_BUCKET).ok_or_else(|| ConfigError::new(DEST_BUCKET, "not set"))?;
        validate_bucket_name(&dest_bucket).map_err(|p| ConfigError::new(DEST_BUCKET, p))?;

        let dest_prefix = normalize_prefix(get(DEST_PREFIX).as_deref().unwrap_or(""))
            .map_err(|p| ConfigError::new(DEST_PREFIX, p))?;

        let key_arn = get(DEST_KMS_KEY_ARN);
        let bucket_key = get(DEST_BUCKET_KEY_ENABLED);
        let encryption = match get(DEST_SSE).as_deref() {
            None | Some("aws:kms") => {
                let key_arn = key_arn.ok_or_else(|| {
                    ConfigError::new(DEST_KMS_KEY_ARN, "not set (required with DEST_SSE=aws:kms)")
                })?;
                validate_kms_key_arn(&key_arn).map_err(|p| ConfigError::new(DEST_KMS_KEY_ARN, p))?;
                let bucket_key_enabled = match bucket_key.as_deref() {
                    None => true,
                    Some(v) if v.eq_ignore_ascii_case("true") => true,
                    Some(v) if v.eq_ignore_ascii_case("false") => false,
                    Some(v) => {
                        return Err(ConfigError::new(
                            DEST_BUCKET_KEY_ENABLED,
                            format!("expected true or false, found {v:?}"),
                        ));
                    }
                };
                DestinationEncryption::Kms { key_arn, bucket_key_enabled }
            }
            Some("AES256") => {
                // A key given alongside SSE-S3 is a contradiction: refuse rather than guess.
                if key_arn.is_some() {
                    return Err(ConfigError::new(DEST_KMS_KEY_ARN, "must not be set with DEST_SSE=AES256"));
                }
                if bucket_key.is_some() {
                    return Err(ConfigError::new(
                        DEST_BUCKET_KEY_ENABLED,
                        "applies to SSE-KMS only; unset it with DEST_SSE=AES256",
                    ));
                }
                DestinationEncryption::S3Managed
            }
            Some(other) => {
                return Err(ConfigError::new(
                    DEST_SSE,
                    format!("expected aws:kms or AES256, found {other:?}"),
                ));
            }
        };

        let pointer_name = get(LATEST_POINTER_NAME).unwrap_or_else(|| DEFAULT_POINTER_NAME.to_string());
        validate_pointer_name(&pointer_name).map_err(|p| ConfigError::new(LATEST_POINTER_NAME, p))?;

        let max_concurrency = match get(MAX_CONCURRENCY) {
            None => DEFAULT_MAX_CONCURRENCY,
            Some(v) => v.parse::<usize>().ok().filter(|n| (1..=MAX_MAX_CONCURRENCY).contains(n)).ok_or_else(
                || {
                    ConfigError::new(
                        MAX_CONCURRENCY,
                        format!("expected an integer from 1 to {MAX_MAX_CONCURRENCY}, found {v:?}"),
                    )
                },
            )?,
        };
        let max_concurrency = NonZeroUsize::new(max_concurrency)
            .ok_or_else(|| ConfigError::new(MAX_CONCURRENCY, "must be at least 1"))?;

        Ok(Config { dest_bucket, dest_prefix, encryption, pointer_name, max_concurrency })
    }

    /// The KMS key the copies are encrypted with, if any.
    pub fn kms_key_arn(&self) -> Option<&str> {
        match &self.encryption {
            DestinationEncryption::Kms { key_arn, .. } => Some(key_arn),
            DestinationEncryption::S3Managed => None,
        }
    }
}

impl fmt::Display for DestinationEncryption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DestinationEncryption::Kms { key_arn, bucket_key_enabled } => {
                write!(
                    f,
                    "aws:kms with {key_arn} (bucket key {})",
                    if *bucket_key_enabled { "on" } else { "off" }
                )
            }
            DestinationEncryption::S3Managed => f.write_str("AES256"),
        }
    }
}

/// General-purpose bucket naming rules (the subset that can be checked offline).
fn validate_bucket_name(name: &str) -> Result<(), String> {
    if !(3..=63).contains(&name.len()) {
        return Err(format!("bucket name {name:?} must be 3 to 63 characters"));
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-') {
        return Err(format!("bucket name {name:?} may hold only lowercase letters, digits, '.' and '-'"));
    }
    let edges = [name.as_bytes().first(), name.as_bytes().last()];
    if edges.iter().any(|b| !b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())) {
        return Err(format!("bucket name {name:?} must start and end with a letter or digit"));
    }
    if name.contains("..") {
        return Err(format!("bucket name {name:?} must not contain '..'"));
    }
    Ok(())
}

/// `inv`, `/inv/`, `inv/` all become `inv/`; empty stays empty.
fn normalize_prefix(prefix: &str) -> Result<String, String> {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    if trimmed.split('/').any(str::is_empty) {
        return Err(format!("prefix {prefix:?} has an empty segment ('//')"));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(format!("prefix {prefix:?} contains a control character"));
    }
    Ok(format!("{trimmed}/"))
}

/// `arn:<partition>:kms:<region>:<12-digit account>:key/<key id>`; aliases are refused because
/// S3 records the key ARN and the copies are checked against it.
pub fn validate_kms_key_arn(arn: &str) -> Result<(), String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [scheme, partition, service, region, account, resource] = parts.as_slice() else {
        return Err(format!("{arn:?} is not an ARN (arn:<partition>:kms:<region>:<account>:key/<id>)"));
    };
    if *scheme != "arn" || !partition.starts_with("aws") {
        return Err(format!("{arn:?} is not an AWS ARN"));
    }
    if *service != "kms" {
        return Err(format!("{arn:?} is not a KMS ARN (service {service:?})"));
    }
    if region.is_empty() || !region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(format!("{arn:?} has no valid region"));
    }
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{arn:?}: account {account:?} is not 12 digits"));
    }
    if resource.starts_with("alias/") {
        return Err(format!("{arn:?} is an alias ARN; give the key ARN (…:key/<id>)"));
    }
    let id = resource
        .strip_prefix("key/")
        .ok_or_else(|| format!("{arn:?}: resource {resource:?} is not key/<id>"))?;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(format!("{arn:?}: key id {id:?} is not valid"));
    }
    Ok(())
}

fn validate_pointer_name(name: &str) -> Result<(), String> {
    use s3_connector_domain::inventory::location::{CHECKSUM_NAME, MANIFEST_NAME};
    if name.contains('/') {
        return Err(format!("{name:?} must be a file name without '/'"));
    }
    if [MANIFEST_NAME, CHECKSUM_NAME, "data", "hive", ".", ".."].contains(&name) {
        return Err(format!("{name:?} collides with a name S3 Inventory uses"));
    }
    // It ends up in an object key next to the reports; keep it plain ASCII.
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        return Err(format!("{name:?} may hold only letters, digits, '.', '_' and '-'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/0987dcba-09fe-87dc-65ba-ab0987654321";

    fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn minimal_kms_setup_and_defaults() {
        let config = load(&[(DEST_BUCKET, "acme-catalog-drop"), (DEST_KMS_KEY_ARN, KEY)]).unwrap();
        assert_eq!(config.dest_bucket, "acme-catalog-drop");
        assert_eq!(config.dest_prefix, "");
        assert_eq!(
            config.encryption,
            DestinationEncryption::Kms { key_arn: KEY.into(), bucket_key_enabled: true }
        );
        assert_eq!(config.pointer_name, "latest.json");
        assert_eq!(config.max_concurrency.get(), 4);
        assert_eq!(config.kms_key_arn(), Some(KEY));
    }

    #[test]
    fn optional_variables() {
        let config = load(&[
            (DEST_BUCKET, "drop"),
            (DEST_PREFIX, "/inventory/acme"),
            (DEST_KMS_KEY_ARN, KEY),
            (DEST_BUCKET_KEY_ENABLED, "FALSE"),
            (LATEST_POINTER_NAME, "LATEST"),
            (MAX_CONCURRENCY, "8"),
        ])
        .unwrap();
        assert_eq!(config.dest_prefix, "inventory/acme/");
        assert_eq!(
            config.encryption,
            DestinationEncryption::Kms { key_arn: KEY.into(), bucket_key_enabled: false }
        );
        assert_eq!(config.pointer_name, "LATEST");
        assert_eq!(config.max_concurrency.get(), 8);

        let sse_s3 = load(&[(DEST_BUCKET, "drop"), (DEST_SSE, "AES256"), (DEST_PREFIX, " ")]).unwrap();
        assert_eq!(sse_s3.encryption, DestinationEncryption::S3Managed);
        assert_eq!(sse_s3.kms_key_arn(), None);
        assert_eq!(sse_s3.dest_prefix, "");
    }

    #[test]
    fn errors_name_the_variable() {
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: &[Case<'_>] = &[
            (&[], DEST_BUCKET, "not set"),
            (&[(DEST_BUCKET, "Bad_Bucket"), (DEST_KMS_KEY_ARN, KEY)], DEST_BUCKET, "lowercase"),
            (&[(DEST_BUCKET, "ab"), (DEST_KMS_KEY_ARN, KEY)], DEST_BUCKET, "3 to 63"),
            (&[(DEST_BUCKET, "-drop"), (DEST_KMS_KEY_ARN, KEY)], DEST_BUCKET, "start and end"),
            (&[(DEST_BUCKET, "drop")], DEST_KMS_KEY_ARN, "not set"),
            (&[(DEST_BUCKET, "drop"), (DEST_KMS_KEY_ARN, "alias/catalog")], DEST_KMS_KEY_ARN, "not an ARN"),
            (
                &[
                    (DEST_BUCKET, "drop"),
                    (DEST_KMS_KEY_ARN, "arn:aws:kms:us-east-1:111122223333:alias/catalog"),
                ],
                DEST_KMS_KEY_ARN,
                "alias ARN",
            ),
            (
                &[(DEST_BUCKET, "drop"), (DEST_KMS_KEY_ARN, "arn:aws:kms:us-east-1:1111:key/abc")],
                DEST_KMS_KEY_ARN,
                "12 digits",
            ),
            (
                &[(DEST_BUCKET, "drop"), (DEST_KMS_KEY_ARN, "arn:aws:s3:us-east-1:111122223333:key/abc")],
                DEST_KMS_KEY_ARN,
                "not a KMS ARN",
            ),
            (
                &[(DEST_BUCKET, "drop"), (DEST_KMS_KEY_ARN, "arn:aws:kms::111122223333:key/abc")],
                DEST_KMS_KEY_ARN,
                "region",
            ),
            (
                &[(DEST_BUCKET, "drop"), (DEST_KMS_KEY_ARN, "arn:aws:kms:us-east-1:111122223333:key/")],
                DEST_KMS_KEY_ARN,
                "key id",
            ),
            (&[(DEST_BUCKET, "drop"), (DEST_SSE, "aws:kms:dsse")], DEST_SSE, "expected aws:kms or AES256"),
            (
                &[(DEST_BUCKET, "drop"), (DEST_SSE, "AES256"), (DEST_KMS_KEY_ARN, KEY)],
                DEST_KMS_KEY_ARN,
                "must not",
            ),
            (
                &[(DEST_BUCKET, "drop"), (DEST_SSE, "AES256"), (DEST_BUCKET_KEY_ENABLED, "true")],
                DEST_BUCKET_KEY_ENABLED,
                "SSE-KMS only",
            ),
            (
                &[(DEST_BUCKET, "drop"), (DEST_KMS_KEY_ARN, KEY), (DEST_BUCKET_KEY_ENABLED, "yes")],
                DEST_BUCKET_KEY_ENABLED,
                "true or false",
            ),
            (
                &[(DEST_BUCKET, "drop"), (DEST_KMS_KEY_ARN, KEY), (DEST_PREFIX, "a//b")],
                DEST_PREFIX,
                "empty segment",
            ),
            (
                &[(DEST_BUCKET, "drop"), (DEST_KMS_KEY_ARN, KEY), (LATEST_POINTER_NAME, "a/b")],
                LATEST_POINTER_NAME,
                "without '/'",
            ),
            (
                &[(DEST_BUCKET, "drop"), (DEST_KMS_KEY_ARN, KEY), (LATEST_POINTER_NAME, "manifest.json")],
                LATEST_POINTER_NAME,
                "collides",
            ),
            (
                &[(DEST_BUCKET, "drop"), (DEST_KMS_KEY_ARN, KEY), (MAX_CONCURRENCY, "0")],
                MAX_CONCURRENCY,
                "1 to 32",
            ),
            (
                &[(DEST_BUCKET, "drop"), (DEST_KMS_KEY_ARN, KEY), (MAX_CONCURRENCY, "x")],
                MAX_CONCURRENCY,
                "1 to 32",
            ),
        ];
        for (vars, variable, needle) in cases {
            let err = load(vars).unwrap_err();
            assert_eq!(err.variable, *variable, "{vars:?}: {err}");
            let text = err.to_string();
            assert!(text.starts_with(&format!("environment variable {variable}: ")), "{text}");
            assert!(text.contains(needle), "{vars:?}: {text} should contain {needle:?}");
        }
    }

    #[test]
    fn other_partitions_are_accepted() {
        for arn in [
            "arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/mrk-1234abcd",
            "arn:aws-cn:kms:cn-north-1:111122223333:key/1",
        ] {
            validate_kms_key_arn(arn).unwrap();
        }
    }
}
