-- Idempotent mutations (owner: infra::idempotency::IdempotencyStore). One row per caller and
-- `Idempotency-Key`: the request's fingerprint, and its answer once it has one. A row older than
-- 24 hours no longer counts and is swept.
create table idempotency_keys (
    caller_id   text collate "C" not null,
    key         text collate "C" not null,
    fingerprint bytea not null,
    -- null while the first request runs
    response    jsonb,
    created_at  timestamptz not null default now(),
    primary key (caller_id, key)
);
create index idempotency_keys_by_age on idempotency_keys (created_at);
