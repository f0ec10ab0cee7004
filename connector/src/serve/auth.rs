//! Bearer-token authentication.
//!
//! The token comes from a file or an environment variable, is held only as its SHA-256 digest,
//! and is compared in constant time (digests of equal length, `subtle`), so neither its value
//! nor its length leaks through timing, logs or Debug output.

use std::fmt;
use std::path::Path;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// The expected token (its digest), or none when the server runs without authentication.
#[derive(Clone)]
pub struct BearerAuth {
    expected: Option<[u8; 32]>,
}

impl fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerAuth").field("token", &self.expected.map(|_| "<set>")).finish()
    }
}

/// The token cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token file cannot be read.
    #[error("cannot read the token file {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The token is empty or too short to be a secret.
    #[error("the token from {source_name} is too short: use at least 16 characters")]
    TooShort {
        /// Where it came from (file path or variable name, never the value).
        source_name: String,
    },
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

impl BearerAuth {
    /// No authentication.
    pub fn disabled() -> BearerAuth {
        BearerAuth { expected: None }
    }

    /// Authentication with this token.
    pub fn with_token(token: &str) -> BearerAuth {
        BearerAuth { expected: Some(digest(token.trim().as_bytes())) }
    }

    /// Loads the token: the file when given, else the environment variable; `None` when
    /// neither holds one.
    pub fn load(file: Option<&Path>, env_var: &str) -> Result<Option<BearerAuth>, TokenError> {
        let (token, source_name) = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| TokenError::File {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
                (text, path.display().to_string())
            }
            None => match std::env::var(env_var) {
                Ok(v) => (v, format!("${env_var}")),
                Err(_) => return Ok(None),
            },
        };
        if token.trim().len() < 16 {
            return Err(TokenError::TooShort { source_name });
        }
        Ok(Some(BearerAuth::with_token(&token)))
    }

    /// True when requests must carry a token.
    pub fn is_enabled(&self) -> bool {
        self.expected.is_some()
    }

    /// Checks an `authorization` header value.
    pub fn check(&self, header: Option<&str>) -> Result<(), Status> {
        let Some(expected) = &self.expected else {
            return Ok(());
        };
        let presented = header
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(|t| digest(t.trim().as_bytes()));
        match presented {
            Some(d) if bool::from(d.ct_eq(expected)) => Ok(()),
            Some(_) => Err(Status::unauthenticated("invalid bearer token")),
            None => Err(Status::unauthenticated("missing `authorization: Bearer <token>` metadata")),
        }
    }
}

impl Interceptor for BearerAuth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let header = request.metadata().get("authorization").and_then(|v| v.to_str().ok());
        match self.check(header) {
            Ok(()) => Ok(request),
            Err(status) => {
                metrics::counter!(super::metrics::UNAUTHENTICATED).increment(1);
                Err(status)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "correct-horse-battery-staple";

    #[test]
    fn only_the_exact_token_passes() {
        let auth = BearerAuth::with_token(TOKEN);
        assert!(auth.check(Some(&format!("Bearer {TOKEN}"))).is_ok());
        for bad in
            [None, Some("Bearer"), Some("Bearer wrong-token-wrong-token"), Some(TOKEN), Some("Basic abc")]
        {
            let status = auth.check(bad).unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{bad:?}");
            assert!(!status.message().contains(TOKEN));
        }
        assert!(BearerAuth::disabled().check(None).is_ok());
    }

    #[test]
    fn the_token_never_shows_in_debug_or_errors() {
        let auth = BearerAuth::with_token(TOKEN);
        assert!(!format!("{auth:?}").contains(TOKEN));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "short\n").unwrap();
        let err = BearerAuth::load(Some(&path), "UNUSED").unwrap_err().to_string();
        assert!(err.contains("too short") && !err.contains("short\n"), "{err}");
        std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
        let auth = BearerAuth::load(Some(&path), "UNUSED").unwrap().unwrap();
        assert!(auth.check(Some(&format!("Bearer {TOKEN}"))).is_ok(), "trailing newline ignored");
    }
}
