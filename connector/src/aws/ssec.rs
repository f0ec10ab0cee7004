//! SSE-C customer keys: where they come from (per bucket and prefix: an environment variable
//! or a file), and the rule that they only travel over TLS.
//!
//! A key is 32 bytes, configured base64-encoded; S3 wants it base64 plus the base64 MD5 of the
//! raw key on every GET/HEAD. Keys never appear in Debug output, errors or logs.

use std::fmt;
use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use md5::{Digest, Md5};
use zeroize::Zeroizing;

/// One customer key, ready for the request headers.
#[derive(Clone)]
pub struct SseCustomerKey {
    key_b64: Zeroizing<String>,
    md5_b64: String,
}

impl fmt::Debug for SseCustomerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SseCustomerKey(<redacted>)")
    }
}

impl SseCustomerKey {
    /// A key from its base64 text (surrounding whitespace ignored); must decode to 32 bytes.
    pub fn from_base64(text: &str) -> Result<SseCustomerKey, &'static str> {
        let raw = Zeroizing::new(STANDARD.decode(text.trim()).map_err(|_| "not valid base64")?);
        if raw.len() != 32 {
            return Err("an SSE-C key must be 32 bytes (AES-256)");
        }
        let md5_b64 = STANDARD.encode(Md5::digest(raw.as_slice()));
        Ok(SseCustomerKey { key_b64: Zeroizing::new(STANDARD.encode(raw.as_slice())), md5_b64 })
    }

    /// The key, base64 (for `x-amz-server-side-encryption-customer-key`).
    pub fn key_base64(&self) -> &str {
        &self.key_b64
    }

    /// The key's MD5, base64 (for `...-customer-key-MD5`).
    pub fn md5_base64(&self) -> &str {
        &self.md5_b64
    }
}

/// Where a key is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// An environment variable holding the base64 key.
    Env(String),
    /// A file holding the base64 key.
    File(PathBuf),
}

/// A configured key: for objects of `bucket` under `prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseCRule {
    /// Bucket.
    pub bucket: String,
    /// Key prefix (empty: the whole bucket).
    pub prefix: String,
    /// Where the key comes from.
    pub source: KeySource,
}

/// SSE-C configuration errors; they name the rule or source, never the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseCError {
    /// A rule does not parse.
    #[error(
        "invalid SSE-C key rule '{rule}': expected BUCKET[/PREFIX]=env:VARIABLE or BUCKET[/PREFIX]=file:PATH"
    )]
    Rule {
        /// The rule as given.
        rule: String,
    },
    /// The key cannot be read or is not a valid key.
    #[error("SSE-C key for s3://{bucket}/{prefix} from {source_name}: {reason}")]
    Key {
        /// Bucket.
        bucket: String,
        /// Prefix.
        prefix: String,
        /// `$VARIABLE` or the file path.
        source_name: String,
        /// Why.
        reason: String,
    },
    /// Keys would travel in clear text.
    #[error(
        "refusing to send SSE-C keys to {endpoint} over plain HTTP: use https (plain HTTP is allowed only to a loopback endpoint with the explicit loopback setting)"
    )]
    PlainHttp {
        /// The endpoint.
        endpoint: String,
    },
}

/// Parses `BUCKET[/PREFIX]=env:VARIABLE` or `BUCKET[/PREFIX]=file:PATH`.
pub fn parse_rule(text: &str) -> Result<SseCRule, SseCError> {
    let bad = || SseCError::Rule { rule: text.to_string() };
    let (target, source) = text.split_once('=').ok_or_else(bad)?;
    let target = target.strip_prefix("s3://").unwrap_or(target);
    let (bucket, prefix) = target.split_once('/').unwrap_or((target, ""));
    if !crate::extract::targets::is_valid_bucket_name(bucket) {
        return Err(bad());
    }
    let source = if let Some(var) = source.strip_prefix("env:") {
        KeySource::Env(var.to_string())
    } else if let Some(path) = source.strip_prefix("file:") {
        KeySource::File(PathBuf::from(path))
    } else {
        return Err(bad());
    };
    Ok(SseCRule { bucket: bucket.to_string(), prefix: prefix.to_string(), source })
}

/// The loaded keys.
#[derive(Debug, Clone, Default)]
pub struct SseCKeys {
    rules: Vec<(String, String, SseCustomerKey)>,
}

impl SseCKeys {
    /// Reads every rule's key now, so a missing or malformed key fails at start-up.
    pub fn load(rules: &[SseCRule]) -> Result<SseCKeys, SseCError> {
        let mut out = Vec::new();
        for rule in rules {
            let (text, source_name) = match &rule.source {
                KeySource::Env(var) => (std::env::var(var).ok(), format!("${var}")),
                KeySource::File(path) => (std::fs::read_to_string(path).ok(), path.display().to_string()),
            };
            let err = |reason: &str| SseCError::Key {
                bucket: rule.bucket.clone(),
                prefix: rule.prefix.clone(),
                source_name: source_name.clone(),
                reason: reason.to_string(),
            };
            let text = Zeroizing::new(text.ok_or_else(|| err("not set or not readable"))?);
            let key = SseCustomerKey::from_base64(&text).map_err(err)?;
            out.push((rule.bucket.clone(), rule.prefix.clone(), key));
        }
        Ok(SseCKeys { rules: out })
    }

    /// True when no key is configured.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The key of the most specific rule covering `bucket`/`key`.
    pub fn key_for(&self, bucket: &str, key: &str) -> Option<&SseCustomerKey> {
        self.rules
            .iter()
            .filter(|(b, p, _)| b == bucket && key.starts_with(p.as_str()))
            .max_by_key(|(_, p, _)| p.len())
            .map(|(_, _, k)| k)
    }
}

/// Refuses plain-HTTP endpoints for SSE-C keys, except loopback ones when explicitly allowed.
pub fn check_transport(endpoint: Option<&str>, allow_loopback_http: bool) -> Result<(), SseCError> {
    let Some(endpoint) = endpoint else { return Ok(()) };
    let Ok(url) = url::Url::parse(endpoint) else { return Ok(()) };
    if url.scheme() != "http" {
        return Ok(());
    }
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    if loopback && allow_loopback_http {
        Ok(())
    } else {
        Err(SseCError::PlainHttp { endpoint: endpoint.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // "0123456789abcdef0123456789abcdef"

    #[test]
    fn keys_are_checked_and_never_shown() {
        let k = SseCustomerKey::from_base64(KEY).unwrap();
        assert_eq!(k.md5_base64().len(), 24);
        assert!(!format!("{k:?}").contains(KEY));
        assert!(SseCustomerKey::from_base64("c2hvcnQ=").is_err(), "16 bytes is not AES-256");
        assert!(SseCustomerKey::from_base64("not base64!").is_err());
    }

    #[test]
    fn rules_parse_and_the_most_specific_wins() {
        assert_eq!(
            parse_rule("data/secure/=env:KEY_A").unwrap(),
            SseCRule {
                bucket: "data".into(),
                prefix: "secure/".into(),
                source: KeySource::Env("KEY_A".into())
            }
        );
        assert!(parse_rule("data").is_err());
        assert!(parse_rule("Bad_Bucket=env:X").is_err());
        assert!(parse_rule("data=vault:X").is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, format!("{KEY}\n")).unwrap();
        let keys = SseCKeys::load(&[
            SseCRule { bucket: "data".into(), prefix: String::new(), source: KeySource::File(path.clone()) },
            SseCRule { bucket: "data".into(), prefix: "a/".into(), source: KeySource::File(path) },
        ])
        .unwrap();
        assert!(keys.key_for("data", "a/x").is_some());
        assert!(keys.key_for("other", "a/x").is_none());
        let err = SseCKeys::load(&[SseCRule {
            bucket: "data".into(),
            prefix: String::new(),
            source: KeySource::Env("S3C_TEST_SURELY_UNSET_VARIABLE".into()),
        }])
        .unwrap_err();
        assert!(err.to_string().contains("$S3C_TEST_SURELY_UNSET_VARIABLE"), "{err}");
    }

    #[test]
    fn keys_travel_over_tls_or_an_allowed_loopback_only() {
        assert!(check_transport(Some("https://s3.amazonaws.com"), false).is_ok());
        assert!(check_transport(None, false).is_ok());
        assert!(check_transport(Some("http://127.0.0.1:4566"), true).is_ok());
        assert!(check_transport(Some("http://127.0.0.1:4566"), false).is_err());
        assert!(check_transport(Some("http://minio.internal:9000"), true).is_err());
    }
}
