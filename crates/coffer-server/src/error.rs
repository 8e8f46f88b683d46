//! The server's one error type, mapped to HTTP status in one place.

use axum::http::StatusCode;
use coffer_store::StoreError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The request is malformed or asks for something impossible.
    #[error("{0}")]
    BadRequest(String),
    /// No token, an unknown or expired token, or a policy that forbids it.
    #[error("permission denied")]
    PermissionDenied,
    /// The tenant is disabled: every operation in it is refused until enabled.
    #[error("tenant {0:?} is disabled")]
    TenantDisabled(String),
    /// The path names nothing (Vault answers `{"errors": []}`).
    #[error("")]
    NotFound,
    #[error("unsupported path")]
    UnsupportedPath,
    #[error("unsupported operation")]
    MethodNotAllowed,
    /// The root key is not in memory.
    #[error("Vault is sealed")]
    Sealed,
    #[error("request body is larger than the limit of {limit} bytes (limits.max_request_bytes)")]
    PayloadTooLarge { limit: usize },
    #[error("batch_input has {items} items, more than the limit of {limit} (limits.max_batch_items)")]
    BatchTooLarge { items: usize, limit: usize },
    #[error("rate limit exceeded for this token (limits.rate_limit); retry in {retry_after}s")]
    RateLimited { retry_after: u64 },
    #[error("request body has more than {limit} JSON values")]
    TooManyValues { limit: usize },
    #[error("the server holds too much request data right now (limits.max_inflight_bytes); retry shortly")]
    Busy,
    #[error("the request needs more memory than limits.max_inflight_bytes ({limit} bytes) allows")]
    OverBudget { limit: usize },
    #[error("request did not complete within {0:?} (limits.request_timeout)")]
    Timeout(std::time::Duration),
    /// The audit record could not be made durable in time: fail closed.
    #[error("{0}; the request was refused")]
    AuditUnavailable(String),
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            // Rows that grant access cannot be checked without the root key.
            StoreError::Sealed => ApiError::Sealed,
            other => ApiError::Store(other),
        }
    }
}

impl ApiError {
    pub(crate) fn bad(msg: impl Into<String>) -> Self {
        ApiError::BadRequest(msg.into())
    }

    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::BatchTooLarge { .. } => StatusCode::BAD_REQUEST,
            ApiError::PermissionDenied | ApiError::TenantDisabled(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound | ApiError::UnsupportedPath => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Sealed | ApiError::Timeout(_) | ApiError::AuditUnavailable(_) | ApiError::Busy => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::PayloadTooLarge { .. } | ApiError::TooManyValues { .. } | ApiError::OverBudget { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) | ApiError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Seconds for a `Retry-After` header, when the client should come back.
    pub(crate) fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited { retry_after } => Some(*retry_after),
            ApiError::Busy => Some(1),
            _ => None,
        }
    }

    /// The messages for `{"errors": [...]}`; empty for a plain 404.
    pub(crate) fn messages(&self) -> Vec<String> {
        match self {
            ApiError::NotFound => Vec::new(),
            // Details of internal failures go to the log, not the client.
            ApiError::Store(_) | ApiError::Internal(_) => vec!["internal error".to_owned()],
            other => vec![other.to_string()],
        }
    }
}

impl From<coffer_core::Error> for ApiError {
    fn from(e: coffer_core::Error) -> Self {
        match e {
            coffer_core::Error::Random => ApiError::Internal(e.to_string()),
            other => ApiError::BadRequest(other.to_string()),
        }
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;
