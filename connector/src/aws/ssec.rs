//! SSE-C customer keys: where they come from (per bucket and prefix: an environment variable,
//! a file, or an AWS Secrets Manager secret), and the rule that they only travel over TLS.
//!
//! Secrets are fetched once, when the keys are loaded (at `serve` start-up, at the start of a
//! `sample` run), through the narrow [`SecretSource`] seam, with the connector's own identity.
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
    /// An AWS Secrets Manager secret (name or ARN): its SecretString is the base64 key, or a JSON
    /// object whose `field` holds it; a SecretBinary is the raw 32-byte key.
    SecretsManager {
        /// Secret name or ARN.
        secret_id: String,
        /// JSON field of the SecretString holding the key (`secretsmanager:ID#FIELD`).
        field: Option<String>,
    },
}

impl KeySource {
    /// How the source is named in errors: never the key.
    fn describe(&self) -> String {
        match self {
            KeySource::Env(var) => format!("${var}"),
            KeySource::File(path) => path.display().to_string(),
            KeySource::SecretsManager { secret_id, field: None } => format!("secret {secret_id}"),
            KeySource::SecretsManager { secret_id, field: Some(f) } => {
                format!("secret {secret_id} (field {f})")
            }
        }
    }
}

/// A secret's value as Secrets Manager returns it.
pub enum SecretValue {
    /// SecretString.
    Text(Zeroizing<String>),
    /// SecretBinary.
    Binary(Zeroizing<Vec<u8>>),
}

/// Reads secrets (AWS Secrets Manager `GetSecretValue`); a seam tests can replace.
#[async_trait::async_trait]
pub trait SecretSource: Send + Sync {
    /// The current value of a secret; the error names the secret and the cause, never a value.
    async fn secret_value(&self, secret_id: &str) -> Result<SecretValue, String>;
}

/// [`SecretSource`] over the AWS SDK.
pub struct SdkSecrets {
    client: aws_sdk_secretsmanager::Client,
}

impl SdkSecrets {
    /// Secrets read with this client (the connector's identity, region and endpoint).
    pub fn new(client: aws_sdk_secretsmanager::Client) -> SdkSecrets {
        SdkSecrets { client }
    }
}

#[async_trait::async_trait]
impl SecretSource for SdkSecrets {
    async fn secret_value(&self, secret_id: &str) -> Result<SecretValue, String> {
        use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
        let out = self.client.get_secret_value().secret_id(secret_id).send().await.map_err(|e| {
            let code = e.code().unwrap_or("error").to_string();
            // The SDK error's message comes from AWS and never holds the secret's value.
            let message = e.message().map(str::to_string).unwrap_or_else(|| e.to_string());
            format!("GetSecretValue failed: {code}: {message}")
        })?;
        if let Some(text) = out.secret_string() {
            return Ok(SecretValue::Text(Zeroizing::new(text.to_string())));
        }
        if let Some(blob) = out.secret_binary() {
            return Ok(SecretValue::Binary(Zeroizing::new(blob.as_ref().to_vec())));
        }
        Err("the secret has no value".into())
    }
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
        "invalid SSE-C key rule '{rule}': expected BUCKET[/PREFIX]=env:VARIABLE, BUCKET[/PREFIX]=file:PATH or BUCKET[/PREFIX]=secretsmanager:SECRET_ID[#JSON_FIELD]"
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

/// The Secrets Manager secrets (names or ARNs) named by SSE-C key rules, for `check`.
pub fn secret_ids(rules: &[String]) -> Result<Vec<String>, SseCError> {
    let mut secrets = Vec::new();
    for text in rules {
        if let KeySource::SecretsManager { secret_id, .. } = parse_rule(text)?.source
            && !secrets.contains(&secret_id)
        {
            secrets.push(secret_id);
        }
    }
    Ok(secrets)
}

/// Parses `BUCKET[/PREFIX]=env:VARIABLE`, `BUCKET[/PREFIX]=file:PATH` or
/// `BUCKET[/PREFIX]=secretsmanager:SECRET_ID[#JSON_FIELD]`.
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
    } else if let Some(secret) = source.strip_prefix("secretsmanager:") {
        let (secret_id, field) = match secret.split_once('#') {
            Some((id, field)) if !field.is_empty() => (id, Some(field.to_string())),
            Some(_) => return Err(bad()),
            None => (secret, None),
        };
        if secret_id.is_empty() {
            return Err(bad());
        }
        KeySource::SecretsManager { secret_id: secret_id.to_string(), field }
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
    /// Reads every rule's key now (environment and files only), so a missing or malformed key
    /// fails at start-up. Rules naming Secrets Manager need [`SseCKeys::load_with_secrets`].
    pub fn load(rules: &[SseCRule]) -> Result<SseCKeys, SseCError> {
        let mut out = Vec::new();
        for rule in rules {
            out.push((rule.bucket.clone(), rule.prefix.clone(), Self::local_key(rule)?));
        }
        Ok(SseCKeys { rules: out })
    }

    /// True when some rule reads a secret from Secrets Manager.
    pub fn needs_secrets(rules: &[SseCRule]) -> bool {
        rules.iter().any(|r| matches!(r.source, KeySource::SecretsManager { .. }))
    }

    /// Reads every rule's key now; Secrets Manager secrets through `secrets`, each once.
    pub async fn load_with_secrets(
        rules: &[SseCRule],
        secrets: &dyn SecretSource,
    ) -> Result<SseCKeys, SseCError> {
        let mut out = Vec::new();
        for rule in rules {
            let key = match &rule.source {
                KeySource::SecretsManager { secret_id, field } => {
                    let value =
                        secrets.secret_value(secret_id).await.map_err(|reason| Self::error(rule, &reason))?;
                    Self::key_from_secret(value, field.as_deref())
                        .map_err(|reason| Self::error(rule, reason))?
                }
                _ => Self::local_key(rule)?,
            };
            out.push((rule.bucket.clone(), rule.prefix.clone(), key));
        }
        Ok(SseCKeys { rules: out })
    }

    fn error(rule: &SseCRule, reason: &str) -> SseCError {
        SseCError::Key {
            bucket: rule.bucket.clone(),
            prefix: rule.prefix.clone(),
            source_name: rule.source.describe(),
            reason: reason.to_string(),
        }
    }

    fn local_key(rule: &SseCRule) -> Result<SseCustomerKey, SseCError> {
        let text = match &rule.source {
            KeySource::Env(var) => std::env::var(var).ok(),
            KeySource::File(path) => std::fs::read_to_string(path).ok(),
            KeySource::SecretsManager { .. } => {
                return Err(Self::error(rule, "Secrets Manager keys are loaded with load_with_secrets"));
            }
        };
        let text = Zeroizing::new(text.ok_or_else(|| Self::error(rule, "not set or not readable"))?);
        SseCustomerKey::from_base64(&text).map_err(|reason| Self::error(rule, reason))
    }

    /// The key in a secret: base64 text, a JSON field holding base64 text, or 32 raw bytes.
    fn key_from_secret(value: SecretValue, field: Option<&str>) -> Result<SseCustomerKey, &'static str> {
        match (value, field) {
            (SecretValue::Text(text), None) => SseCustomerKey::from_base64(&text),
            (SecretValue::Text(text), Some(field)) => {
                // serde_json's error would quote the input: only say that it is not JSON.
                let json: serde_json::Value =
                    serde_json::from_str(&text).map_err(|_| "the secret is not a JSON object")?;
                let inner = json
                    .get(field)
                    .and_then(|v| v.as_str())
                    .ok_or("the JSON field is missing or not a string")?;
                SseCustomerKey::from_base64(inner)
            }
            (SecretValue::Binary(bytes), None) if bytes.len() == 32 => {
                SseCustomerKey::from_base64(&Zeroizing::new(STANDARD.encode(bytes.as_slice())))
            }
            (SecretValue::Binary(bytes), None) => SseCustomerKey::from_base64(
                std::str::from_utf8(&bytes).map_err(|_| "SecretBinary must be 32 bytes")?,
            ),
            (SecretValue::Binary(_), Some(_)) => Err("a JSON field needs a SecretString"),
        }
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

    /// Secrets by id; absent ids fail like AWS does.
    struct FakeSecrets(Vec<(&'static str, &'static [u8], bool)>);

    #[async_trait::async_trait]
    impl SecretSource for FakeSecrets {
        async fn secret_value(&self, id: &str) -> Result<SecretValue, String> {
            match self.0.iter().find(|(name, _, _)| *name == id) {
                Some((_, value, true)) => Ok(SecretValue::Binary(Zeroizing::new(value.to_vec()))),
                Some((_, value, false)) => {
                    Ok(SecretValue::Text(Zeroizing::new(String::from_utf8(value.to_vec()).unwrap())))
                }
                None => Err("GetSecretValue failed: ResourceNotFoundException: not found".into()),
            }
        }
    }

    #[tokio::test]
    async fn keys_come_from_secrets_manager_as_text_json_or_binary() {
        let json = format!("{{\"sse_c\": \"{KEY}\", \"other\": 1}}");
        let json: &'static str = Box::leak(json.into_boxed_str());
        let secrets = FakeSecrets(vec![
            ("plain", KEY.as_bytes(), false),
            ("json", json.as_bytes(), false),
            ("raw", b"0123456789abcdef0123456789abcdef", true),
            ("short", b"0123456789abcdef", true),
        ]);
        let rule = |text: &str| parse_rule(text).unwrap();
        assert_eq!(
            rule("data/p/=secretsmanager:json#sse_c").source,
            KeySource::SecretsManager { secret_id: "json".into(), field: Some("sse_c".into()) }
        );
        let arn = "arn:aws:secretsmanager:us-east-1:111122223333:secret:ssec-AbCdEf";
        assert!(
            matches!(rule(&format!("data=secretsmanager:{arn}")).source, KeySource::SecretsManager { ref secret_id, field: None } if secret_id == arn)
        );
        assert!(parse_rule("data=secretsmanager:").is_err());
        assert!(parse_rule("data=secretsmanager:id#").is_err());

        let rules = [
            rule("data/a/=secretsmanager:plain"),
            rule("data/b/=secretsmanager:json#sse_c"),
            rule("data/c/=secretsmanager:raw"),
        ];
        assert!(SseCKeys::needs_secrets(&rules));
        assert!(SseCKeys::load(&rules).is_err(), "secrets need the async loader");
        let keys = SseCKeys::load_with_secrets(&rules, &secrets).await.unwrap();
        let md5 = |k: &str| keys.key_for("data", k).unwrap().md5_base64().to_string();
        assert_eq!(md5("a/x"), md5("b/x"), "same key as text and as a JSON field");
        assert_eq!(md5("a/x"), md5("c/x"), "and as 32 raw bytes");

        for (text, expected) in [
            ("data=secretsmanager:missing", "ResourceNotFoundException"),
            ("data=secretsmanager:json#nope", "JSON field"),
            ("data=secretsmanager:plain#sse_c", "not a JSON object"),
            ("data=secretsmanager:short", "32 bytes"),
        ] {
            let err = SseCKeys::load_with_secrets(&[rule(text)], &secrets).await.unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
            assert!(err.contains("secret "), "names the secret: {err}");
            assert!(!err.contains(KEY) && !err.contains("0123456789abcdef"), "never the value: {err}");
        }
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
