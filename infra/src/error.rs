//! The application layer's one error type: what a command can fail with, before the API maps it
//! to a GraphQL code (in one place, `webinar_api::graphql::error`).

use cqrs_es::AggregateError;
use webinar_domain::chat::ChatError;
use webinar_domain::gateway::GatewayError;
use webinar_domain::ports::MeetingError;
use webinar_domain::webinar::WebinarError;
use webinar_domain::Denied;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Denied(#[from] Denied),
    /// Input that parsed as GraphQL but breaks a rule; `field` names it.
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error(transparent)]
    Gateway(GatewayError),
    #[error(transparent)]
    Webinar(WebinarError),
    #[error(transparent)]
    Chat(ChatError),
    /// The webinar does not take chat messages now; says why.
    #[error("{0}")]
    ChatClosed(String),
    #[error("too many messages: wait {retry_after_seconds} s before posting again")]
    RateLimited { retry_after_seconds: u64 },
    /// A per-person quota is used up; says which.
    #[error("{0}")]
    QuotaExceeded(String),
    /// BigBlueButton failed or is not configured; nothing was recorded.
    #[error(transparent)]
    Meeting(#[from] MeetingError),
    #[error("another gateway already uses this SIPMediaGW URL")]
    SipMediaGwUrlTaken,
    /// Lost every optimistic-lock race it was allowed to retry.
    #[error("too many concurrent changes to the same object; try again")]
    Conflict,
    /// The database cannot be reached (down, restarting, out of connections): nothing can be said
    /// about the write; the client should try again.
    #[error("the database cannot be reached; try again shortly")]
    Unavailable,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl CommandError {
    pub fn invalid(field: &'static str, reason: impl ToString) -> Self {
        CommandError::Invalid {
            field,
            reason: reason.to_string(),
        }
    }
}

impl From<sqlx::Error> for CommandError {
    fn from(error: sqlx::Error) -> Self {
        if database_unreachable(&error) {
            tracing::warn!(%error, "database unreachable");
            return CommandError::Unavailable;
        }
        CommandError::Internal(anyhow::Error::new(error).context("database"))
    }
}

/// Whether `error` says the database cannot be reached now, as opposed to refusing a statement:
/// the connection failed or broke, the pool gave up waiting, or the server is shutting down,
/// starting up or out of connections.
pub fn database_unreachable(error: &sqlx::Error) -> bool {
    match error {
        // A protocol error is what a connection cut by a proxy (or a server gone mid-handshake)
        // looks like: the bytes stop making sense. It is logged in full either way.
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(e) => e.code().is_some_and(|code| {
            // 08: connection exception; 57P01-3: shutdown, crash, starting up; 53300: no
            // connection slot left.
            code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}

/// [`database_unreachable`] for an error that may wrap a `sqlx::Error` (the event store's and
/// the read ports' boxed errors), looked for along its chain of sources.
pub fn unreachable_within(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if error
            .downcast_ref::<sqlx::Error>()
            .is_some_and(database_unreachable)
        {
            return true;
        }
        next = error.source();
    }
    false
}

/// Maps the framework's error for an aggregate whose own error converts into ours.
pub fn from_aggregate<E>(error: AggregateError<E>) -> CommandError
where
    E: std::error::Error + Into<CommandError>,
{
    match error {
        AggregateError::UserError(e) => e.into(),
        AggregateError::AggregateConflict => CommandError::Conflict,
        AggregateError::DatabaseConnectionError(e) | AggregateError::UnexpectedError(e)
            if unreachable_within(&*e) =>
        {
            tracing::warn!(error = %e, "database unreachable");
            CommandError::Unavailable
        }
        AggregateError::DatabaseConnectionError(e) => {
            CommandError::Internal(anyhow::anyhow!("database connection: {e}"))
        }
        AggregateError::DeserializationError(e) => {
            CommandError::Internal(anyhow::anyhow!("cannot read the event store: {e}"))
        }
        AggregateError::UnexpectedError(e) => {
            CommandError::Internal(anyhow::anyhow!("event store: {e}"))
        }
    }
}

impl From<GatewayError> for CommandError {
    fn from(error: GatewayError) -> Self {
        CommandError::Gateway(error)
    }
}

impl From<WebinarError> for CommandError {
    fn from(error: WebinarError) -> Self {
        CommandError::Webinar(error)
    }
}

impl From<ChatError> for CommandError {
    fn from(error: ChatError) -> Self {
        CommandError::Chat(error)
    }
}
