-- Read model for auditors: one row per event, in log order, with its metadata and its payload
-- (secrets redacted; by design no event holds one, this is a second line of defence).
create table audit_log
(
    global_position bigint primary key,
    tx_id           bigint      not null,
    recorded_at     timestamptz not null,
    aggregate_type  text        not null,
    aggregate_id    text        not null,
    sequence        bigint      not null,
    event_type      text        not null,
    event_version   text        not null,
    actor_id        text        not null,
    actor_name      text,
    correlation_id  text,
    causation_id    text,
    request_id      text,
    payload         jsonb       not null
);
-- Every filter is an equality prefix followed by the log order, so each query is an index range
-- scan that stops after `first` rows, whatever the table's size.
create unique index audit_log_order on audit_log (tx_id, global_position);
create index audit_log_by_aggregate on audit_log (aggregate_type, aggregate_id, tx_id, global_position);
create index audit_log_by_actor on audit_log (actor_id, tx_id, global_position);
create index audit_log_by_correlation on audit_log (correlation_id, tx_id, global_position);
create index audit_log_by_type on audit_log (event_type, tx_id, global_position);
create index audit_log_by_time on audit_log (recorded_at);
