-- The live page's change counter (owner: projections::live_events, its projector). One row, moved
-- in the projector's batch transaction whenever a batch changes `live_events` rows, and only
-- then: the API keeps the live page in memory for as long as this row has not moved (chat posts
-- and participants joining, which move the projector's checkpoint, leave it alone). A rebuild
-- swaps in its own row, with another `changed_at`.
create table live_events_version (
    one        boolean primary key default true check (one),
    version    bigint not null,
    changed_at timestamptz not null
);
insert into live_events_version (version, changed_at) values (0, clock_timestamp());
