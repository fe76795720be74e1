//! What every projector does with a batch before and after its own work: decode the events
//! (naming the one that fails, so the stalled projector says why), and announce the changed rows
//! at commit.

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

/// Ids per notification: a payload stays far below PostgreSQL's 8000 bytes.
const IDS_PER_NOTIFICATION: usize = 100;

/// Tells subscribers, at commit, which rows changed on `channel`: one notification per batch (per
/// hundred ids), the ids comma-separated.
pub(crate) async fn announce(
    conn: &mut PgConnection,
    channel: &str,
    ids: impl IntoIterator<Item = Uuid>,
) -> Result<(), sqlx::Error> {
    let mut ids: Vec<String> = ids.into_iter().map(|id| id.to_string()).collect();
    ids.sort();
    ids.dedup();
    let payloads: Vec<String> = ids
        .chunks(IDS_PER_NOTIFICATION)
        .map(|chunk| chunk.join(","))
        .collect();
    if payloads.is_empty() {
        return Ok(());
    }
    sqlx::query("select pg_notify($1, payload) from unnest($2::text[]) as payload")
        .bind(channel)
        .bind(payloads)
        .execute(conn)
        .await?;
    Ok(())
}
