//! Who the connector acts as: STS calls, their error classification, and the per-request
//! *user identity* used for sampling.
//!
//! Two identities exist and are kept apart by type:
//!
//! - the **service identity** ([`super::AwsContext`]): the standard credential chain, optionally
//!   through `AssumeRole` with an ExternalId (aws-config's `AssumeRoleProvider`, refreshed by
//!   the SdkConfig's lazy identity cache);
//! - a **user identity** ([`UserIdentity`] → [`UserContext`]): a role ARN + ExternalId, or a
//!   web-identity token exchanged with `AssumeRoleWithWebIdentity`. Its SDK configuration is
//!   built from transport settings only and has exactly one credentials provider, the user's:
//!   when the user's role cannot be assumed, requests fail; they never run as the service.

use std::fmt;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::identity::IdentityCache;
use aws_config::sts::AssumeRoleProvider;
use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};
use aws_types::SdkConfig;

use super::config::{AwsContext, ConfigError, ConnectionSettings, validate_external_id, validate_role_arn};
use super::error::{AwsError, AwsErrorKind};
use super::store::RequestStats;

/// The caller as STS sees it (GetCallerIdentity).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CallerIdentity {
    /// Account id.
    pub account: String,
    /// Caller ARN (user, role session, root).
    pub arn: String,
    /// Unique id of the caller.
    pub user_id: String,
}

/// What an STS failure means for the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StsErrorKind {
    /// `AccessDenied` on `sts:AssumeRole`: the trust policy does not let the caller in with
    /// this ExternalId (wrong, missing or unexpected), or the caller may not call AssumeRole.
    NotTrusted,
    /// `RegionDisabledException`: STS is not activated in the region.
    RegionDisabled,
    /// `MalformedPolicyDocument` / `PackedPolicyTooLarge`: a session policy or tags are refused.
    MalformedPolicy,
    /// `ExpiredToken(Exception)`: the credentials (or web-identity token) have expired.
    ExpiredToken,
    /// `InvalidIdentityToken` / `IDPRejectedClaim`: the web-identity token is not accepted.
    InvalidIdentityToken,
    /// `IDPCommunicationError`: the identity provider could not be reached by STS.
    IdentityProviderUnreachable,
    /// `ValidationError`: a parameter is out of range (duration above the role's maximum, ...).
    InvalidParameter,
    /// The calling credentials are unknown or rejected (InvalidClientTokenId, signature).
    InvalidCredentials,
    /// No answer from STS.
    Network,
    /// Anything else.
    Other,
}

impl StsErrorKind {
    /// Stable code used in reports.
    pub fn code(self) -> &'static str {
        match self {
            StsErrorKind::NotTrusted => "ROLE_NOT_TRUSTED",
            StsErrorKind::RegionDisabled => "STS_REGION_DISABLED",
            StsErrorKind::MalformedPolicy => "STS_MALFORMED_POLICY",
            StsErrorKind::ExpiredToken => "STS_EXPIRED_TOKEN",
            StsErrorKind::InvalidIdentityToken => "STS_INVALID_IDENTITY_TOKEN",
            StsErrorKind::IdentityProviderUnreachable => "STS_IDP_UNREACHABLE",
            StsErrorKind::InvalidParameter => "STS_INVALID_PARAMETER",
            StsErrorKind::InvalidCredentials => "STS_INVALID_CREDENTIALS",
            StsErrorKind::Network => "STS_UNREACHABLE",
            StsErrorKind::Other => "STS_ERROR",
        }
    }
}

/// Classifies an STS error code (and status) into a [`StsErrorKind`].
pub fn classify_sts(code: Option<&str>, status: Option<u16>) -> StsErrorKind {
    match code {
        Some("AccessDenied" | "AccessDeniedException") => StsErrorKind::NotTrusted,
        Some("RegionDisabledException") => StsErrorKind::RegionDisabled,
        Some(
            "MalformedPolicyDocument"
            | "MalformedPolicyDocumentException"
            | "PackedPolicyTooLarge"
            | "PackedPolicyTooLargeException",
        ) => StsErrorKind::MalformedPolicy,
        Some("ExpiredToken" | "ExpiredTokenException") => StsErrorKind::ExpiredToken,
        Some("InvalidIdentityToken" | "InvalidIdentityTokenException" | "IDPRejectedClaim") => {
            StsErrorKind::InvalidIdentityToken
        }
        Some("IDPCommunicationError" | "IDPCommunicationErrorException") => {
            StsErrorKind::IdentityProviderUnreachable
        }
        Some("ValidationError") => StsErrorKind::InvalidParameter,
        Some("InvalidClientTokenId" | "SignatureDoesNotMatch" | "InvalidAccessKeyId") => {
            StsErrorKind::InvalidCredentials
        }
        Some(_) => StsErrorKind::Other,
        None => match status {
            Some(403) => StsErrorKind::NotTrusted,
            _ => StsErrorKind::Other,
        },
    }
}

/// A failed STS call, classified, with the role it concerned.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} ({}){}", .error, .kind.code(), .role_arn.as_deref().map(|r| format!(" for role {r}")).unwrap_or_default())]
pub struct StsError {
    /// The role the call was about (AssumeRole*), if any.
    pub role_arn: Option<String>,
    /// Classified kind.
    pub kind: StsErrorKind,
    /// The underlying error (operation, code, message, status).
    pub error: AwsError,
}

impl StsError {
    fn new(role_arn: Option<&str>, error: AwsError) -> StsError {
        let kind = match error.kind {
            AwsErrorKind::Network => StsErrorKind::Network,
            _ => classify_sts(error.code.as_deref(), error.status),
        };
        StsError { role_arn: role_arn.map(str::to_string), kind, error }
    }
}

/// One `sts:AssumeRole` attempt.
#[derive(Clone)]
pub struct AssumeRoleRequest {
    /// Role to assume.
    pub role_arn: String,
    /// ExternalId to send (`None`: none, as the confused-deputy probe does on purpose).
    pub external_id: Option<String>,
    /// Session name.
    pub session_name: String,
    /// Session duration.
    pub duration: Duration,
}

// The ExternalId is per-customer configuration: kept out of debug output.
impl fmt::Debug for AssumeRoleRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AssumeRoleRequest")
            .field("role_arn", &self.role_arn)
            .field("external_id", &self.external_id.as_ref().map(|_| "<set>"))
            .field("session_name", &self.session_name)
            .field("duration", &self.duration)
            .finish()
    }
}

/// What a successful AssumeRole gave, without the credentials (probes throw those away).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssumedRole {
    /// `arn:aws:sts::<account>:assumed-role/<role>/<session>`.
    pub assumed_role_arn: String,
    /// Expiry of the session credentials (RFC 3339), when STS said.
    pub expiration: Option<String>,
}

/// The STS calls `check` makes.
#[async_trait]
pub trait SecurityTokenService: Send + Sync {
    /// GetCallerIdentity.
    async fn caller_identity(&self) -> Result<CallerIdentity, StsError>;
    /// AssumeRole; the session credentials are dropped, only the outcome is returned.
    async fn assume_role(&self, request: &AssumeRoleRequest) -> Result<AssumedRole, StsError>;
}

/// [`SecurityTokenService`] over the AWS SDK.
pub struct SdkSecurityTokenService {
    client: aws_sdk_sts::Client,
    stats: std::sync::Arc<RequestStats>,
}

impl SdkSecurityTokenService {
    /// Wraps a client.
    pub fn new(client: aws_sdk_sts::Client, stats: std::sync::Arc<RequestStats>) -> Self {
        SdkSecurityTokenService { client, stats }
    }
}

#[async_trait]
impl SecurityTokenService for SdkSecurityTokenService {
    async fn caller_identity(&self) -> Result<CallerIdentity, StsError> {
        self.stats.count("sts:GetCallerIdentity");
        let out = self.client.get_caller_identity().send().await.map_err(|e| {
            // A user identity's role that cannot be assumed fails here, inside credentials
            // loading: report the AssumeRole failure, not an opaque credentials error.
            sts_error_in(&e).unwrap_or_else(|| {
                StsError::new(None, AwsError::from_sdk("sts:GetCallerIdentity", None, None, &e))
            })
        })?;
        Ok(CallerIdentity {
            account: out.account().unwrap_or_default().to_string(),
            arn: out.arn().unwrap_or_default().to_string(),
            user_id: out.user_id().unwrap_or_default().to_string(),
        })
    }

    async fn assume_role(&self, request: &AssumeRoleRequest) -> Result<AssumedRole, StsError> {
        self.stats.count("sts:AssumeRole");
        let seconds = i32::try_from(request.duration.as_secs()).unwrap_or(i32::MAX);
        let out = self
            .client
            .assume_role()
            .role_arn(&request.role_arn)
            .role_session_name(&request.session_name)
            .set_external_id(request.external_id.clone())
            .duration_seconds(seconds)
            .send()
            .await
            .map_err(|e| {
                StsError::new(
                    Some(&request.role_arn),
                    AwsError::from_sdk("sts:AssumeRole", None, Some(&request.role_arn), &e),
                )
            })?;
        Ok(AssumedRole {
            assumed_role_arn: out.assumed_role_user().map(|u| u.arn().to_string()).unwrap_or_default(),
            expiration: out.credentials().map(|c| c.expiration().to_string()),
        })
    }
}

/// The settings of the service identity *before* any role is assumed: the standard chain.
/// `check` uses it to call AssumeRole itself, so that a trust failure is seen as such and not
/// as an opaque credentials error on the first S3 call.
pub fn base_settings(settings: &ConnectionSettings) -> ConnectionSettings {
    ConnectionSettings {
        role_arn: None,
        external_id: None,
        session_name: None,
        session_duration: None,
        ..settings.clone()
    }
}

/// Loads the base (pre-role) service identity.
pub async fn load_base_context(settings: &ConnectionSettings) -> Result<AwsContext, ConfigError> {
    AwsContext::load(&base_settings(settings)).await
}

/// A web-identity token (OIDC JWT). Never printed.
#[derive(Clone)]
pub struct WebIdentityToken(String);

impl WebIdentityToken {
    /// Wraps a token; surrounding whitespace (a trailing newline from a file) is dropped.
    pub fn new(token: impl Into<String>) -> WebIdentityToken {
        WebIdentityToken(token.into().trim().to_string())
    }
}

impl fmt::Debug for WebIdentityToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebIdentityToken(<redacted>)")
    }
}

/// The identity of the person on whose behalf objects are sampled, passed per request.
#[derive(Debug, Clone)]
pub enum UserIdentity {
    /// A role the service assumes for the user (`sts:AssumeRole`, with the platform's ExternalId).
    Role {
        /// The user's role.
        role_arn: String,
        /// ExternalId required by the role's trust policy.
        external_id: Option<String>,
        /// Session name (names the user in CloudTrail).
        session_name: String,
    },
    /// A web-identity token exchanged for role credentials (`sts:AssumeRoleWithWebIdentity`;
    /// the call is unsigned, the service's credentials take no part).
    WebIdentity {
        /// The role the token is exchanged for.
        role_arn: String,
        /// The OIDC token.
        token: WebIdentityToken,
        /// Session name.
        session_name: String,
    },
}

/// Errors building a user identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The role ARN, ExternalId or session name is invalid.
    #[error("invalid user identity: {0}")]
    Invalid(#[from] ConfigError),
    /// The web-identity token is empty.
    #[error("empty web-identity token for role {role_arn}")]
    EmptyToken {
        /// The role.
        role_arn: String,
    },
    /// The service configuration lacks something the STS providers need.
    #[error("the service SDK configuration has no {missing}")]
    IncompleteServiceConfig {
        /// What is missing.
        missing: &'static str,
    },
}

impl UserIdentity {
    /// The role this identity acts as.
    pub fn role_arn(&self) -> &str {
        match self {
            UserIdentity::Role { role_arn, .. } | UserIdentity::WebIdentity { role_arn, .. } => role_arn,
        }
    }

    fn validate(&self) -> Result<(), IdentityError> {
        validate_role_arn(self.role_arn())?;
        match self {
            UserIdentity::Role { external_id, .. } => {
                if let Some(id) = external_id {
                    validate_external_id(id)?;
                }
            }
            UserIdentity::WebIdentity { role_arn, token, .. } => {
                if token.0.is_empty() {
                    return Err(IdentityError::EmptyToken { role_arn: role_arn.clone() });
                }
            }
        }
        Ok(())
    }

    /// Builds the user's SDK context. `service` is used for two things only: its transport
    /// (region, endpoint, HTTP client, retry, sleep, time source) and, for [`UserIdentity::Role`],
    /// signing the `AssumeRole` call. The resulting configuration's only credentials are the
    /// user's role session. No STS call is made here; the first request makes it.
    pub async fn load(&self, service: &AwsContext) -> Result<UserContext, IdentityError> {
        self.validate()?;
        // aws-config's AssumeRoleProvider panics without one; `AwsContext::load` always sets it.
        if service.sdk.time_source().is_none() {
            return Err(IdentityError::IncompleteServiceConfig { missing: "time source" });
        }
        let provider = match self {
            UserIdentity::Role { role_arn, external_id, session_name } => {
                let mut builder = AssumeRoleProvider::builder(role_arn.clone())
                    .session_name(session_name.clone())
                    .configure(&service.sdk);
                if let Some(id) = external_id {
                    builder = builder.external_id(id.clone());
                }
                if let Some(region) = service.sdk.region() {
                    builder = builder.region(region.clone());
                }
                SharedCredentialsProvider::new(builder.build().await)
            }
            UserIdentity::WebIdentity { role_arn, token, session_name } => {
                // Only the transport of the service config: no credentials provider at all.
                let sts = aws_sdk_sts::Client::new(&transport_only(&service.sdk).build());
                SharedCredentialsProvider::new(WebIdentityProvider {
                    sts,
                    role_arn: role_arn.clone(),
                    token: token.clone(),
                    session_name: session_name.clone(),
                })
            }
        };
        let sdk = transport_only(&service.sdk)
            .identity_cache(IdentityCache::lazy().build())
            .credentials_provider(provider)
            .build();
        Ok(UserContext { sdk, force_path_style: service.force_path_style, role_arn: self.role_arn().into() })
    }
}

/// A builder with the transport settings of `sdk` and no credentials: whatever is added to it
/// is the only identity the resulting configuration has.
fn transport_only(sdk: &SdkConfig) -> aws_types::sdk_config::Builder {
    let mut builder = SdkConfig::builder().behavior_version(BehaviorVersion::latest());
    builder.set_region(sdk.region().cloned());
    builder.set_endpoint_url(sdk.endpoint_url().map(str::to_string));
    builder.set_retry_config(sdk.retry_config().cloned());
    builder.set_timeout_config(sdk.timeout_config().cloned());
    builder.set_sleep_impl(sdk.sleep_impl());
    builder.set_time_source(sdk.time_source());
    builder.set_http_client(sdk.http_client());
    builder.set_stalled_stream_protection(sdk.stalled_stream_protection());
    builder
}

/// AssumeRoleWithWebIdentity with an in-memory token. Caching and refresh before expiry come
/// from the SdkConfig's lazy identity cache, as for aws-config's own providers.
struct WebIdentityProvider {
    sts: aws_sdk_sts::Client,
    role_arn: String,
    token: WebIdentityToken,
    session_name: String,
}

impl fmt::Debug for WebIdentityProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebIdentityProvider").field("role_arn", &self.role_arn).finish_non_exhaustive()
    }
}

impl WebIdentityProvider {
    async fn credentials(&self) -> Result<Credentials, CredentialsError> {
        let out = self
            .sts
            .assume_role_with_web_identity()
            .role_arn(&self.role_arn)
            .role_session_name(&self.session_name)
            .web_identity_token(&self.token.0)
            .send()
            .await
            .map_err(|e| {
                let err = StsError::new(
                    Some(&self.role_arn),
                    AwsError::from_sdk("sts:AssumeRoleWithWebIdentity", None, Some(&self.role_arn), &e),
                );
                CredentialsError::provider_error(err)
            })?;
        let c = out.credentials().ok_or_else(|| {
            CredentialsError::unhandled("AssumeRoleWithWebIdentity returned no credentials")
        })?;
        let expiry = SystemTime::try_from(*c.expiration())
            .map_err(|_| CredentialsError::unhandled("credential expiry out of range"))?;
        Ok(Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_string()),
            Some(expiry),
            "WebIdentityToken",
        ))
    }
}

impl ProvideCredentials for WebIdentityProvider {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.credentials())
    }
}

/// SDK configuration acting as a user; built only by [`UserIdentity::load`].
#[derive(Clone, Debug)]
pub struct UserContext {
    sdk: SdkConfig,
    force_path_style: bool,
    role_arn: String,
}

impl UserContext {
    /// The role the user acts as.
    pub fn role_arn(&self) -> &str {
        &self.role_arn
    }

    /// An S3 client acting as the user.
    pub fn s3_client(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::config::Builder::from(&self.sdk)
            .force_path_style(self.force_path_style)
            .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// A KMS client acting as the user (client-side decryption unwraps data keys as the user).
    pub fn kms_client(&self) -> aws_sdk_kms::Client {
        aws_sdk_kms::Client::new(&self.sdk)
    }

    /// An STS client acting as the user (GetCallerIdentity).
    pub fn sts_client(&self) -> aws_sdk_sts::Client {
        aws_sdk_sts::Client::new(&self.sdk)
    }
}

/// The STS failure inside a failed request's credentials loading, if any: our web-identity
/// provider's [`StsError`], or aws-config's `AssumeRoleProvider` error, classified.
pub fn sts_error_in(err: &(dyn std::error::Error + 'static)) -> Option<StsError> {
    type AssumeRoleSdkError = aws_sdk_sts::error::SdkError<
        aws_sdk_sts::operation::assume_role::AssumeRoleError,
        aws_smithy_runtime_api::http::Response,
    >;
    let mut source: Option<&(dyn std::error::Error + 'static)> = err.source();
    while let Some(e) = source {
        if let Some(sts) = e.downcast_ref::<StsError>() {
            return Some(sts.clone());
        }
        if let Some(sdk) = e.downcast_ref::<AssumeRoleSdkError>() {
            return Some(StsError::new(None, AwsError::from_sdk("sts:AssumeRole", None, None, sdk)));
        }
        source = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sts_codes_classify() {
        let cases = [
            ("AccessDenied", StsErrorKind::NotTrusted),
            ("RegionDisabledException", StsErrorKind::RegionDisabled),
            ("MalformedPolicyDocument", StsErrorKind::MalformedPolicy),
            ("PackedPolicyTooLarge", StsErrorKind::MalformedPolicy),
            ("ExpiredToken", StsErrorKind::ExpiredToken),
            ("ExpiredTokenException", StsErrorKind::ExpiredToken),
            ("InvalidIdentityToken", StsErrorKind::InvalidIdentityToken),
            ("IDPCommunicationError", StsErrorKind::IdentityProviderUnreachable),
            ("InvalidClientTokenId", StsErrorKind::InvalidCredentials),
            ("Whatever", StsErrorKind::Other),
        ];
        for (code, want) in cases {
            assert_eq!(classify_sts(Some(code), Some(400)), want, "{code}");
        }
        assert_eq!(classify_sts(None, Some(403)), StsErrorKind::NotTrusted);
        assert_eq!(classify_sts(None, Some(500)), StsErrorKind::Other);
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let token = WebIdentityToken::new("eyJhbGciOi.secret.jwt\n");
        let identity = UserIdentity::WebIdentity {
            role_arn: "arn:aws:iam::123456789012:role/u".into(),
            token,
            session_name: "alice".into(),
        };
        assert!(!format!("{identity:?}").contains("secret"));
        let request = AssumeRoleRequest {
            role_arn: "arn:aws:iam::123456789012:role/u".into(),
            external_id: Some("customer-7-external".into()),
            session_name: "s3-connector".into(),
            duration: Duration::from_secs(900),
        };
        assert!(!format!("{request:?}").contains("customer-7-external"));
    }

    #[test]
    fn base_settings_drop_the_role() {
        let s = ConnectionSettings {
            region: Some("eu-west-1".into()),
            role_arn: Some("arn:aws:iam::123456789012:role/r".into()),
            external_id: Some("abc-def".into()),
            session_name: Some("n1".into()),
            session_duration: Some(Duration::from_secs(900)),
            ..Default::default()
        };
        let base = base_settings(&s);
        assert_eq!(base.region.as_deref(), Some("eu-west-1"));
        assert!(base.role_arn.is_none() && base.external_id.is_none() && base.session_name.is_none());
    }
}
