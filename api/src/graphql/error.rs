//! The API's one error type and its mapping to `extensions.code` — the only place where domain
//! and application errors become GraphQL codes.

use async_graphql::ErrorExtensions;
use webinar_domain::Denied;
use webinar_infra::error::{database_unreachable, CommandError};
use webinar_projections::queries::QueryError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// `field` is the input's path, e.g. `input.rtmpUrl`.
    #[error("{field}: {reason}")]
    BadInput { field: String, reason: String },
    #[error("{0}")]
    InvalidState(String),
    #[error("{0}")]
    NoGatewayAvailable(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    UpstreamUnavailable(String),
    #[error("{0}")]
    RateLimited(String),
    /// Our database cannot be reached: the client may retry.
    #[error("the service cannot reach its database; try again shortly")]
    Unavailable,
    /// Logged in full; the client sees only that something went wrong.
    #[error("internal error")]
    Internal(anyhow::Error),
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated(_) => "UNAUTHENTICATED",
            ApiError::Forbidden(_) => "FORBIDDEN",
            ApiError::NotFound(_) => "NOT_FOUND",
            ApiError::BadInput { .. } => "BAD_USER_INPUT",
            ApiError::InvalidState(_) => "INVALID_STATE",
            ApiError::NoGatewayAvailable(_) => "NO_GATEWAY_AVAILABLE",
            ApiError::Conflict(_) => "CONFLICT",
            ApiError::UpstreamUnavailable(_) => "UPSTREAM_UNAVAILABLE",
            ApiError::RateLimited(_) => "RATE_LIMITED",
            ApiError::Unavailable => "UNAVAILABLE",
            ApiError::Internal(_) => "INTERNAL",
        }
    }

    pub fn bad_input(field: impl Into<String>, reason: impl ToString) -> Self {
        ApiError::BadInput {
            field: field.into(),
            reason: reason.to_string(),
        }
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::NotFound(format!("no such {what}"))
    }
}

impl ErrorExtensions for ApiError {
    fn extend(&self) -> async_graphql::Error {
        if let ApiError::Internal(error) = self {
            tracing::error!(error = format!("{error:#}"), "internal error");
        }
        let field = match self {
            ApiError::BadInput { field, .. } => Some(field.clone()),
            _ => None,
        };
        async_graphql::Error::new(self.to_string()).extend_with(|_, ext| {
            ext.set("code", self.code());
            if let Some(field) = field {
                ext.set("field", field);
            }
        })
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        if database_unreachable(&error) {
            tracing::warn!(%error, "database unreachable");
            return ApiError::Unavailable;
        }
        ApiError::Internal(anyhow::Error::new(error).context("database"))
    }
}

impl From<Denied> for ApiError {
    fn from(denied: Denied) -> Self {
        match denied {
            Denied::Unauthenticated => ApiError::Unauthenticated(denied.to_string()),
            Denied::Forbidden(_) => ApiError::Forbidden(denied.to_string()),
            // Someone who may not see the webinar learns nothing about it.
            Denied::Hidden => ApiError::NotFound(denied.to_string()),
        }
    }
}

impl From<QueryError> for ApiError {
    fn from(error: QueryError) -> Self {
        match error {
            QueryError::Denied(denied) => denied.into(),
            QueryError::Database(error) => error.into(),
            QueryError::Unreadable(error) => ApiError::Internal(anyhow::Error::new(error)),
        }
    }
}

/// Maps every application error to its code. Input paths are given as the caller named them.
pub fn from_command(error: CommandError, input: &str) -> ApiError {
    let field = |name: &str| {
        if input.is_empty() {
            name.to_owned()
        } else {
            format!("{input}.{name}")
        }
    };
    match error {
        CommandError::Denied(denied) => denied.into(),
        CommandError::Invalid {
            field: name,
            reason,
        } => ApiError::bad_input(field(name), reason),
        CommandError::Gateway(e) => match e.field() {
            Some(name) => ApiError::bad_input(field(name), e),
            None => by_code(e.code(), e.to_string()),
        },
        CommandError::Webinar(e) => by_code(e.code(), e.to_string()),
        CommandError::Chat(e) => by_code(e.code(), e.to_string()),
        CommandError::ChatClosed(reason) => ApiError::InvalidState(reason),
        e @ CommandError::RateLimited { .. } => ApiError::RateLimited(e.to_string()),
        CommandError::QuotaExceeded(reason) => ApiError::RateLimited(reason),
        CommandError::Meeting(e) => ApiError::UpstreamUnavailable(e.to_string()),
        CommandError::SipMediaGwUrlTaken => {
            ApiError::bad_input(field("sipmediagwUrl"), CommandError::SipMediaGwUrlTaken)
        }
        CommandError::Conflict => ApiError::Conflict(CommandError::Conflict.to_string()),
        CommandError::Unavailable => ApiError::Unavailable,
        CommandError::Internal(e) => ApiError::Internal(e),
    }
}

/// A domain error, by the code its own enum gives it.
fn by_code(code: &'static str, message: String) -> ApiError {
    match code {
        "NOT_FOUND" => ApiError::NotFound(message),
        "CONFLICT" => ApiError::Conflict(message),
        "NO_GATEWAY_AVAILABLE" => ApiError::NoGatewayAvailable(
            "no gateway is free during this slot: choose another time or ask an administrator"
                .to_owned(),
        ),
        _ => ApiError::InvalidState(message),
    }
}
