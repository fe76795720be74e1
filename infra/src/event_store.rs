//! The event store: cqrs-es over postgres-es's tables, plus what they lack.
//!
//! - [`PgEventStore`] loads from the latest snapshot (through postgres-es's repository) and writes
//!   the new events in one multi-row `INSERT … RETURNING` (their log positions come back with it;
//!   alone, it is its own transaction), with a snapshot every `snapshot_every` events. It replaces cqrs-es's `PersistedEventStore`,
//!   whose snapshot path applies the new events a second time to an aggregate that
//!   `EventSink::write` has already applied them to (cqrs-es 0.5.0, `update_snapshot_with_events`).
//! - [`CommandMetadata`] puts the contract's keys on every event.
//! - [`CommandBus`] loads, decides (the aggregate's pure `handle`) and commits; it retries a command
//!   that lost an optimistic-lock race, and returns the log position of what it wrote so that
//!   callers can wait for the read models to catch up.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::time::Duration;

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{EventStoreAggregateContext, PersistedEventRepository, SerializedEvent};
use cqrs_es::{Aggregate, AggregateError, EventEnvelope, EventStore};
use postgres_es::PostgresEventRepository;
use rand::Rng;
use sqlx::PgPool;
use uuid::Uuid;
use webinar_domain::{Caller, Identified};

use crate::event_log::{self, Position};
use crate::metrics;

/// An aggregate loaded for a command: its state can be checked before the command runs on it.
pub struct Loaded<A: Aggregate>(EventStoreAggregateContext<A>);

impl<A: Aggregate> Loaded<A> {
    pub fn state(&self) -> &A {
        &self.0.aggregate
    }
}

/// An event store over the `events` and `snapshots` tables.
pub struct PgEventStore<A> {
    repo: PostgresEventRepository,
    pool: PgPool,
    snapshot_every: usize,
    _aggregate: PhantomData<fn() -> A>,
}

impl<A: Aggregate> PgEventStore<A> {
    pub fn new(pool: PgPool, snapshot_every: usize) -> Self {
        Self {
            repo: PostgresEventRepository::new(pool.clone()),
            pool,
            snapshot_every: snapshot_every.max(1),
            _aggregate: PhantomData,
        }
    }

    /// The domain's one upcasting path, as every reader of the log takes it.
    fn upcast(mut event: SerializedEvent) -> SerializedEvent {
        webinar_domain::upcasting::upcast(
            &event.aggregate_type,
            &event.event_type,
            &mut event.event_version,
            &mut event.payload,
        );
        event
    }

    fn deserialize<E: Aggregate>(
        &self,
        events: Vec<SerializedEvent>,
    ) -> Result<Vec<EventEnvelope<E>>, AggregateError<E::Error>> {
        events
            .into_iter()
            .map(|event| {
                EventEnvelope::<E>::try_from(Self::upcast(event))
                    .map_err(|e| AggregateError::DeserializationError(Box::new(e)))
            })
            .collect()
    }
}

impl<A: Aggregate> EventStore<A> for PgEventStore<A> {
    type AC = EventStoreAggregateContext<A>;

    async fn load_events(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        let events = self.repo.get_events::<A>(aggregate_id).await?;
        self.deserialize::<A>(events)
    }

    async fn load_aggregate(
        &self,
        aggregate_id: &str,
    ) -> Result<EventStoreAggregateContext<A>, AggregateError<A::Error>> {
        let snapshot = self.repo.get_snapshot::<A>(aggregate_id).await?;
        let mut context = match snapshot.map(EventStoreAggregateContext::<A>::try_from) {
            Some(Ok(context)) => context,
            // An unreadable snapshot (the aggregate's shape changed) is not fatal: replay all.
            Some(Err(error)) => {
                tracing::warn!(aggregate_type = A::TYPE, aggregate_id, %error, "snapshot ignored");
                let mut context = empty_context::<A>(aggregate_id);
                context.current_snapshot = Some(0);
                context
            }
            None => empty_context::<A>(aggregate_id),
        };
        let events = self
            .repo
            .get_last_events::<A>(aggregate_id, context.current_sequence)
            .await?;
        for envelope in self.deserialize::<A>(events)? {
            context.current_sequence = envelope.sequence;
            context.aggregate.apply(envelope.payload);
        }
        Ok(context)
    }

    async fn commit(
        &self,
        events: Vec<A::Event>,
        context: EventStoreAggregateContext<A>,
        metadata: HashMap<String, String>,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        self.write(events, context, metadata)
            .await
            .map(|(envelopes, _)| envelopes)
    }
}

/// What a write failed with.
fn write_error<E: std::error::Error>(error: sqlx::Error) -> AggregateError<E> {
    match &error {
        sqlx::Error::Database(e) if e.code().as_deref() == Some("23505") => {
            AggregateError::AggregateConflict
        }
        _ => AggregateError::DatabaseConnectionError(Box::new(error)),
    }
}

impl<A: Aggregate> PgEventStore<A> {
    /// Appends `events` after `context` (and a snapshot when one is due) in one transaction;
    /// returns them with the log position of the last one.
    pub async fn write(
        &self,
        events: Vec<A::Event>,
        context: EventStoreAggregateContext<A>,
        metadata: HashMap<String, String>,
    ) -> Result<(Vec<EventEnvelope<A>>, Option<Position>), AggregateError<A::Error>> {
        if events.is_empty() {
            return Ok((Vec::new(), None));
        }
        let first = context.current_sequence + 1;
        let last = context.current_sequence + events.len();
        let envelopes: Vec<EventEnvelope<A>> = events
            .into_iter()
            .zip(first..)
            .map(|(payload, sequence)| EventEnvelope {
                aggregate_id: context.aggregate_id.clone(),
                sequence,
                payload,
                metadata: metadata.clone(),
            })
            .collect();
        let serialized = envelopes
            .iter()
            .map(SerializedEvent::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        // `context.aggregate` already holds the new events: `EventSink::write` applied them.
        let crosses_boundary =
            context.current_sequence / self.snapshot_every != last / self.snapshot_every;
        let snapshot = if crosses_boundary {
            let payload = serde_json::to_value(&context.aggregate)
                .map_err(|e| AggregateError::UnexpectedError(Box::new(e)))?;
            Some((payload, context.current_snapshot.map_or(1, |n| n + 1)))
        } else {
            None
        };
        // One statement: the append lock (its trigger) is taken before anything is written. Alone
        // (no snapshot due, 49 writes in 50) it is its own transaction: one round trip instead of
        // three.
        let insert = sqlx::query_as(
            "insert into events (aggregate_type, aggregate_id, sequence, event_type,
                                 event_version, payload, metadata)
             select $1, $2, e.sequence, e.event_type, e.event_version, e.payload::json,
                    e.metadata::json
               from unnest($3::bigint[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[])
                    as e(sequence, event_type, event_version, payload, metadata)
             returning tx_id::text::bigint, global_position",
        )
        .bind(A::TYPE)
        .bind(&context.aggregate_id)
        .bind(
            serialized
                .iter()
                .map(|e| e.sequence as i64)
                .collect::<Vec<_>>(),
        )
        .bind(
            serialized
                .iter()
                .map(|e| e.event_type.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            serialized
                .iter()
                .map(|e| e.event_version.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(serialized.iter().map(|e| &e.payload).collect::<Vec<_>>())
        .bind(serialized.iter().map(|e| &e.metadata).collect::<Vec<_>>());
        let positions: Vec<(i64, i64)> = match snapshot {
            None => insert.fetch_all(&self.pool).await.map_err(write_error)?,
            Some((payload, current_snapshot)) => {
                let mut tx = self.pool.begin().await.map_err(write_error)?;
                let positions = insert.fetch_all(&mut *tx).await.map_err(write_error)?;
                sqlx::query(
                    "insert into snapshots (aggregate_type, aggregate_id, last_sequence,
                                            current_snapshot, payload)
                     values ($1, $2, $3, $4, $5::json)
                     on conflict (aggregate_type, aggregate_id) do update
                        set last_sequence = excluded.last_sequence,
                            current_snapshot = excluded.current_snapshot,
                            payload = excluded.payload",
                )
                .bind(A::TYPE)
                .bind(&context.aggregate_id)
                .bind(last as i64)
                .bind(current_snapshot as i64)
                .bind(payload)
                .execute(&mut *tx)
                .await
                .map_err(write_error)?;
                tx.commit().await.map_err(write_error)?;
                positions
            }
        };
        let position = positions
            .into_iter()
            .map(|(tx_id, global_position)| Position {
                tx_id,
                global_position,
            })
            .max();
        Ok((envelopes, position))
    }
}

fn empty_context<A: Aggregate>(aggregate_id: &str) -> EventStoreAggregateContext<A> {
    EventStoreAggregateContext {
        aggregate_id: aggregate_id.to_owned(),
        aggregate: A::default(),
        current_sequence: 0,
        current_snapshot: None,
    }
}

/// The metadata every event carries (contract keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandMetadata {
    pub actor_id: String,
    pub actor_name: String,
    /// Shared by one user action and everything it caused.
    pub correlation_id: String,
    /// What caused this command: the originating request's correlation id, or the log position
    /// of the event a reactor reacted to.
    pub causation_id: String,
    pub request_id: Option<String>,
}

impl CommandMetadata {
    /// For a command that starts a new chain of causes (a user's request, a CLI action).
    pub fn originating(caller: &Caller, request_id: Option<String>) -> Self {
        let correlation_id = Uuid::new_v4().to_string();
        Self {
            actor_id: caller.actor_id(),
            actor_name: caller.actor_name(),
            causation_id: correlation_id.clone(),
            correlation_id,
            request_id,
        }
    }

    /// For a command a component issues because of `event`: same correlation, caused by the
    /// event's log position.
    pub fn caused_by(component: &'static str, event: &crate::event_log::StoredEvent) -> Self {
        let caller = Caller::System(component);
        Self {
            actor_id: caller.actor_id(),
            actor_name: caller.actor_name(),
            correlation_id: event
                .meta("correlation_id")
                .map(str::to_owned)
                .unwrap_or_else(|| Uuid::new_v4().to_string()),
            causation_id: event.global_position.to_string(),
            request_id: None,
        }
    }

    pub fn to_map(&self) -> HashMap<String, String> {
        let mut map = HashMap::from([
            ("actor_id".to_owned(), self.actor_id.clone()),
            ("actor_name".to_owned(), self.actor_name.clone()),
            ("correlation_id".to_owned(), self.correlation_id.clone()),
            ("causation_id".to_owned(), self.causation_id.clone()),
        ]);
        if let Some(request_id) = &self.request_id {
            map.insert("request_id".to_owned(), request_id.clone());
        }
        map
    }
}

/// The outcome of a command: which aggregate, and the log position of its newest event (to wait
/// for before reading the read models; `None` when it has no event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written<Id> {
    pub id: Id,
    pub position: Option<Position>,
}

impl<Id> Written<Id> {
    /// The later of two positions written by one use case.
    pub fn and(self, other: Option<Position>) -> Self {
        Self {
            id: self.id,
            position: self.position.max(other),
        }
    }
}

/// Executes commands against one aggregate type, retrying optimistic-lock conflicts.
pub struct CommandBus<A: Aggregate> {
    store: PgEventStore<A>,
    services: A::Services,
    pool: PgPool,
    retries: u32,
}

impl<A> CommandBus<A>
where
    A: Aggregate + Identified,
    A::Command: Clone,
{
    pub fn new(pool: PgPool, services: A::Services, snapshot_every: usize, retries: u32) -> Self {
        Self {
            store: PgEventStore::new(pool.clone(), snapshot_every),
            services,
            pool,
            retries,
        }
    }

    /// Runs `command`; on a conflict, reloads and decides again, up to `retries` times with
    /// jittered exponential back-off.
    #[tracing::instrument(name = "command", skip_all, fields(aggregate = A::TYPE, id = %id))]
    pub async fn execute(
        &self,
        id: A::Id,
        command: A::Command,
        metadata: &CommandMetadata,
    ) -> Result<Written<A::Id>, AggregateError<A::Error>> {
        self.run(id, None, command, metadata).await
    }

    /// The aggregate, loaded to be checked by the caller (a permission, say) and then given to
    /// [`CommandBus::execute_loaded`]: one load for both.
    pub async fn load_for_command(&self, id: A::Id) -> Result<Loaded<A>, AggregateError<A::Error>> {
        Ok(Loaded(self.store.load_aggregate(&id.to_string()).await?))
    }

    /// Runs `command` on the aggregate as `loaded` holds it; only a conflict (someone wrote in
    /// between) loads it again.
    pub async fn execute_loaded(
        &self,
        id: A::Id,
        loaded: Loaded<A>,
        command: A::Command,
        metadata: &CommandMetadata,
    ) -> Result<Written<A::Id>, AggregateError<A::Error>> {
        self.run(id, Some(loaded.0), command, metadata).await
    }

    async fn run(
        &self,
        id: A::Id,
        mut loaded: Option<EventStoreAggregateContext<A>>,
        command: A::Command,
        metadata: &CommandMetadata,
    ) -> Result<Written<A::Id>, AggregateError<A::Error>> {
        let started = std::time::Instant::now();
        let aggregate_id = id.to_string();
        let mut attempt = 0;
        let result = loop {
            let context = match loaded.take() {
                Some(context) => context,
                None => match self.store.load_aggregate(&aggregate_id).await {
                    Ok(context) => context,
                    Err(error) => break Err(error),
                },
            };
            let result = self
                .decide_and_write(context, command.clone(), metadata)
                .await;
            match result {
                Err(AggregateError::AggregateConflict) if attempt < self.retries => {
                    attempt += 1;
                    ::metrics::counter!(metrics::COMMAND_CONFLICT_RETRIES, "aggregate" => A::TYPE)
                        .increment(1);
                    let cap = 2u64.saturating_pow(attempt.min(7)).min(100);
                    let wait = rand::thread_rng().gen_range(1..=cap);
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
                other => break other,
            }
        };
        let outcome = match &result {
            Ok(_) => "ok",
            Err(AggregateError::UserError(_)) => "rejected",
            Err(AggregateError::AggregateConflict) => "conflict",
            Err(_) => "error",
        };
        ::metrics::counter!(metrics::COMMANDS, "aggregate" => A::TYPE, "outcome" => outcome)
            .increment(1);
        ::metrics::histogram!(metrics::COMMAND_DURATION, "aggregate" => A::TYPE)
            .record(started.elapsed().as_secs_f64());
        match &result {
            Ok(_) => tracing::info!(
                correlation_id = %metadata.correlation_id,
                retries = attempt,
                "command handled"
            ),
            Err(error) => tracing::info!(
                correlation_id = %metadata.correlation_id,
                %error,
                "command refused"
            ),
        }
        let position = match result? {
            Some(position) => Some(position),
            // Nothing new (an idempotent repeat): what the read models must show is what the
            // aggregate already had.
            None => event_log::latest_position(&self.pool, A::TYPE, &aggregate_id)
                .await
                .map_err(|e| AggregateError::DatabaseConnectionError(Box::new(e)))?,
        };
        Ok(Written { id, position })
    }

    /// One attempt: decide (the aggregate's `handle`) on the loaded aggregate, write.
    async fn decide_and_write(
        &self,
        mut context: EventStoreAggregateContext<A>,
        command: A::Command,
        metadata: &CommandMetadata,
    ) -> Result<Option<Position>, AggregateError<A::Error>> {
        let sink = EventSink::default();
        context
            .aggregate
            .handle(command, &self.services, &sink)
            .await
            .map_err(AggregateError::UserError)?;
        let events = sink.collect().await;
        let (_, position) = self.store.write(events, context, metadata.to_map()).await?;
        Ok(position)
    }

    /// The aggregate's current state, replayed from its snapshot and events.
    pub async fn load(&self, id: A::Id) -> Result<A, AggregateError<A::Error>> {
        Ok(self.load_versioned(id).await?.0)
    }

    /// The aggregate's current state and the sequence number of its last event.
    pub async fn load_versioned(&self, id: A::Id) -> Result<(A, i64), AggregateError<A::Error>> {
        let context = self.store.load_aggregate(&id.to_string()).await?;
        Ok((context.aggregate, context.current_sequence as i64))
    }
}
