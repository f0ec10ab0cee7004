//! Connection settings and SDK client construction.
//!
//! One place turns the user's connection settings (region, endpoint, path-style, optional STS
//! role) into SDK clients. Credentials come from the standard AWS chain; an optional
//! `AssumeRole` (with ExternalId) wraps it, and the SdkConfig's lazy identity cache refreshes
//! the role credentials before expiry.

use std::fmt;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_types::SdkConfig;
use aws_types::region::Region;

use super::metrics::RequestMetrics;

/// How to reach AWS (or an S3-compatible endpoint) and as whom.
#[derive(Clone, Default)]
pub struct ConnectionSettings {
    /// Region; falls back to the standard chain (`AWS_REGION`, profile), then `us-east-1`.
    pub region: Option<String>,
    /// Endpoint override for every service; falls back to `AWS_ENDPOINT_URL`.
    pub endpoint_url: Option<String>,
    /// Path-style addressing: `None` = automatic (on for IP-address and localhost endpoints).
    pub force_path_style: Option<bool>,
    /// Role to assume with STS before doing anything.
    pub role_arn: Option<String>,
    /// ExternalId passed to `sts:AssumeRole`.
    pub external_id: Option<String>,
    /// Role session name (default `s3-connector`).
    pub session_name: Option<String>,
    /// Role session duration (900–43,200 s).
    pub session_duration: Option<Duration>,
    /// Attempts per request, including the first (SDK standard retry mode).
    pub max_attempts: u32,
}

// Hand-written so that an ExternalId never reaches logs by accident (it is not a secret, but
// it is per-customer configuration that has no place in debug output).
impl fmt::Debug for ConnectionSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionSettings")
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field("force_path_style", &self.force_path_style)
            .field("role_arn", &self.role_arn)
            .field("external_id", &self.external_id.as_ref().map(|_| "<set>"))
            .field("session_name", &self.session_name)
            .field("session_duration", &self.session_duration)
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

/// Errors building clients.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The role session duration is out of the range STS accepts.
    #[error("role session duration {seconds}s is outside 900..=43200 seconds")]
    SessionDuration {
        /// The duration given.
        seconds: u64,
    },
    /// The role ARN is not an IAM role ARN.
    #[error("invalid role ARN '{arn}': expected arn:<partition>:iam::<account-id>:role/<name>")]
    RoleArn {
        /// The ARN given.
        arn: String,
    },
    /// ExternalId outside the STS pattern.
    #[error("invalid ExternalId: must be 2-1224 characters of [A-Za-z0-9+=,.@:/_-]")]
    ExternalId,
    /// Session name outside the STS pattern.
    #[error("invalid role session name '{name}': must be 2-64 characters of [A-Za-z0-9+=,.@_-]")]
    SessionName {
        /// The name given.
        name: String,
    },
    /// The endpoint URL does not parse.
    #[error("invalid endpoint URL '{url}': {reason}")]
    EndpointUrl {
        /// The URL given.
        url: String,
        /// Why it was refused.
        reason: String,
    },
}

/// Validates an IAM role ARN.
pub fn validate_role_arn(arn: &str) -> Result<(), ConfigError> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && !parts[1].is_empty()
        && parts[2] == "iam"
        && parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5].starts_with("role/")
        && parts[5].len() > "role/".len();
    if ok { Ok(()) } else { Err(ConfigError::RoleArn { arn: arn.to_string() }) }
}

/// Validates an STS ExternalId (2–1,224 characters, `[\w+=,.@:/-]`).
pub fn validate_external_id(id: &str) -> Result<(), ConfigError> {
    let ok = (2..=1224).contains(&id.len())
        && id.chars().all(|c| c.is_ascii_alphanumeric() || "_+=,.@:/-".contains(c));
    if ok { Ok(()) } else { Err(ConfigError::ExternalId) }
}

fn validate_session_name(name: &str) -> Result<(), ConfigError> {
    let ok = (2..=64).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c));
    if ok { Ok(()) } else { Err(ConfigError::SessionName { name: name.to_string() }) }
}

/// True when the endpoint should use path-style addressing by default: IP addresses and
/// localhost cannot carry a bucket as a sub-domain.
pub fn path_style_by_default(endpoint: &str) -> bool {
    let Ok(url) = url::Url::parse(endpoint) else {
        return false;
    };
    match url.host() {
        Some(url::Host::Ipv4(_)) | Some(url::Host::Ipv6(_)) => true,
        Some(url::Host::Domain(d)) => d == "localhost" || d.ends_with(".localhost"),
        None => false,
    }
}

/// SDK configuration plus the S3-specific addressing decision.
#[derive(Clone, Debug)]
pub struct AwsContext {
    /// Shared SDK configuration (credentials, region, endpoint, retry).
    pub sdk: SdkConfig,
    /// Whether S3 uses path-style addressing.
    pub force_path_style: bool,
}

impl AwsContext {
    /// Builds the SDK configuration from the settings, through STS when a role is named.
    pub async fn load(settings: &ConnectionSettings) -> Result<AwsContext, ConfigError> {
        if let Some(seconds) = settings.session_duration.map(|d| d.as_secs())
            && !(900..=43_200).contains(&seconds)
        {
            return Err(ConfigError::SessionDuration { seconds });
        }
        if let Some(arn) = &settings.role_arn {
            validate_role_arn(arn)?;
        }
        if let Some(id) = &settings.external_id {
            validate_external_id(id)?;
        }
        if let Some(name) = &settings.session_name {
            validate_session_name(name)?;
        }
        let endpoint = settings
            .endpoint_url
            .clone()
            .or_else(|| std::env::var("AWS_ENDPOINT_URL_S3").ok())
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
            .filter(|e| !e.is_empty());
        if let Some(e) = &endpoint {
            let parsed = url::Url::parse(e)
                .map_err(|err| ConfigError::EndpointUrl { url: e.clone(), reason: err.to_string() })?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(ConfigError::EndpointUrl {
                    url: e.clone(),
                    reason: "scheme must be http or https".into(),
                });
            }
        }
        let force_path_style = settings
            .force_path_style
            .unwrap_or_else(|| endpoint.as_deref().is_some_and(path_style_by_default));

        let retry = RetryConfig::standard().with_max_attempts(settings.max_attempts.max(1));
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).retry_config(retry);
        if let Some(region) = &settings.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(settings_endpoint) = &settings.endpoint_url {
            loader = loader.endpoint_url(settings_endpoint);
        }
        let mut base = loader.load().await;
        if base.region().is_none() {
            base = base.into_builder().region(Region::new("us-east-1")).build();
        }

        let sdk = match &settings.role_arn {
            None => base,
            Some(role_arn) => {
                let mut builder = AssumeRoleProvider::builder(role_arn.clone())
                    .session_name(settings.session_name.clone().unwrap_or_else(|| "s3-connector".into()))
                    .configure(&base);
                if let Some(id) = &settings.external_id {
                    builder = builder.external_id(id.clone());
                }
                if let Some(duration) = settings.session_duration {
                    builder = builder.session_length(duration);
                }
                if let Some(region) = base.region() {
                    builder = builder.region(region.clone());
                }
                let provider = builder.build().await;
                base.into_builder()
                    .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(
                        provider,
                    ))
                    .build()
            }
        };
        Ok(AwsContext { sdk, force_path_style })
    }

    /// The configured region.
    pub fn region(&self) -> String {
        self.sdk.region().map(|r| r.to_string()).unwrap_or_else(|| "us-east-1".into())
    }

    /// An S3 client with the addressing and checksum settings S3-compatible stores need.
    pub fn s3_client(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::config::Builder::from(&self.sdk)
            .force_path_style(self.force_path_style)
            .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired)
            .interceptor(RequestMetrics)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// A KMS client.
    pub fn kms_client(&self) -> aws_sdk_kms::Client {
        aws_sdk_kms::Client::from_conf(
            aws_sdk_kms::config::Builder::from(&self.sdk).interceptor(RequestMetrics).build(),
        )
    }

    /// Secrets Manager client (SSE-C keys kept as secrets), with the connector's identity.
    pub fn secrets_client(&self) -> aws_sdk_secretsmanager::Client {
        aws_sdk_secretsmanager::Client::from_conf(
            aws_sdk_secretsmanager::config::Builder::from(&self.sdk).interceptor(RequestMetrics).build(),
        )
    }

    /// An STS client.
    pub fn sts_client(&self) -> aws_sdk_sts::Client {
        aws_sdk_sts::Client::from_conf(
            aws_sdk_sts::config::Builder::from(&self.sdk).interceptor(RequestMetrics).build(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_style_is_automatic_for_ip_and_localhost() {
        assert!(path_style_by_default("http://127.0.0.1:4566"));
        assert!(path_style_by_default("http://localhost:9000"));
        assert!(path_style_by_default("http://[::1]:9000"));
        assert!(!path_style_by_default("https://s3.us-east-1.amazonaws.com"));
        assert!(!path_style_by_default("not a url"));
    }

    #[test]
    fn role_arn_validation_names_the_problem() {
        assert!(validate_role_arn("arn:aws:iam::123456789012:role/catalog").is_ok());
        assert!(validate_role_arn("arn:aws:iam::123456789012:role/path/catalog").is_ok());
        for bad in ["", "arn:aws:iam::1234:role/x", "arn:aws:s3:::bucket", "arn:aws:iam::123456789012:user/x"]
        {
            let err = validate_role_arn(bad).unwrap_err();
            assert!(err.to_string().contains("invalid role ARN"), "{bad}: {err}");
        }
    }

    #[test]
    fn external_id_follows_the_sts_pattern() {
        assert!(validate_external_id("customer-42:abc/def=").is_ok());
        assert!(validate_external_id("x").is_err());
        assert!(validate_external_id("has space").is_err());
        assert!(validate_external_id(&"a".repeat(1225)).is_err());
    }

    #[test]
    fn debug_hides_the_external_id() {
        let s = ConnectionSettings { external_id: Some("very-specific-id".into()), ..Default::default() };
        assert!(!format!("{s:?}").contains("very-specific-id"));
    }
}
