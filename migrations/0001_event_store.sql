-- The event store: postgres-es 0.5's tables (db/init.sql, kept `json` as it expects), extended
-- with a global order. postgres-es names its columns in every INSERT, so the extra columns with
-- defaults are filled in by PostgreSQL.
create table events
(
    aggregate_type  text                          not null,
    aggregate_id    text                          not null,
    sequence        bigint check (sequence >= 0)  not null,
    event_type      text                          not null,
    event_version   text                          not null,
    payload         json                          not null,
    metadata        json                          not null,
    -- Handed out at INSERT, not at COMMIT: alone it is not a safe checkpoint (see tx_id).
    global_position bigint generated always as identity,
    -- The writing transaction. Readers only read below pg_snapshot_xmin, where the set of
    -- committed rows can no longer grow, in (tx_id, global_position) order.
    tx_id           xid8                          not null default pg_current_xact_id(),
    recorded_at     timestamptz                   not null default now(),
    primary key (aggregate_type, aggregate_id, sequence)
);

create unique index events_global_position on events (global_position);
create index events_log_order on events (tx_id, global_position);

create table snapshots
(
    aggregate_type   text                                 not null,
    aggregate_id     text                                 not null,
    last_sequence    bigint check (last_sequence >= 0)    not null,
    current_snapshot bigint check (current_snapshot >= 0) not null,
    payload          json                                 not null,
    primary key (aggregate_type, aggregate_id, last_sequence)
);
-- postgres-es updates a snapshot in place; one row per aggregate.
create unique index snapshots_one_per_aggregate on snapshots (aggregate_type, aggregate_id);

-- Wake readers at commit, whoever wrote. A statement-level trigger sends one notification per
-- INSERT statement; PostgreSQL delivers it only when the transaction commits.
create function notify_events_appended() returns trigger
    language plpgsql as
$$
begin
    perform pg_notify('webinar_events', '');
    return null;
end;
$$;

create trigger events_appended
    after insert on events
    for each statement execute function notify_events_appended();

-- Where each projector and reactor has got to in the log. Moved in the same transaction as the
-- read-model rows it covers.
create table projection_checkpoints
(
    name             text primary key,
    tx_id            xid8        not null default '0'::xid8,
    global_position  bigint      not null default 0,
    events_processed bigint      not null default 0,
    updated_at       timestamptz not null default now()
);
