//! What every projector does with an event before its own work: decode it (naming the event when
//! that fails, so the stalled projector says why), and announce a changed row at commit.

use serde::de::DeserializeOwned;
use sqlx::PgConnection;
use uuid::Uuid;
use webinar_infra::consumer::ProjectionError;
use webinar_infra::event_log::StoredEvent;

/// The aggregate id of `event` as a UUID.
pub(crate) fn aggregate_uuid(event: &StoredEvent) -> Result<Uuid, ProjectionError> {
    event
        .aggregate_id
        .parse()
        .map_err(|_| ProjectionError::Decode {
            event_type: event.event_type.clone(),
            position: event.global_position,
            source: serde::de::Error::custom("aggregate id is not a UUID"),
        })
}

/// The aggregate's id and the event's payload.
pub(crate) fn decoded<E: DeserializeOwned>(
    event: &StoredEvent,
) -> Result<(Uuid, E), ProjectionError> {
    let payload = event
        .decode()
        .map_err(|e| ProjectionError::decode(event, e))?;
    Ok((aggregate_uuid(event)?, payload))
}

/// Tells subscribers, at commit, that the row `id` changed on `channel` — unless this is a
/// rebuild (a replay is no news, and a million notifications in one transaction are slow).
pub(crate) async fn announce(
    conn: &mut PgConnection,
    channel: &str,
    id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "select pg_notify($1, $2)
          where current_setting('webinar.rebuilding', true) is distinct from 'on'",
    )
    .bind(channel)
    .bind(id.to_string())
    .execute(conn)
    .await?;
    Ok(())
}
