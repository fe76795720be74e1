-- The audit log, shaped for bulk writes (a rebuild writes a million rows) and the same reads.
--
-- Its primary key becomes the log order (tx_id, global_position), which every page of auditLog
-- follows: rows arrive in that order, so the key grows at its right edge, and one index fewer is
-- kept up on every write.
alter table audit_log drop constraint audit_log_pkey;
drop index audit_log_order;
alter table audit_log add constraint audit_log_pkey primary key (tx_id, global_position);
-- Identifiers compare byte by byte: their order means nothing to anyone, and PostgreSQL sorts and
-- compares "C" text several times faster than a linguistic collation.
alter table audit_log
    alter column aggregate_type type text collate "C",
    alter column aggregate_id type text collate "C",
    alter column event_type type text collate "C",
    alter column actor_id type text collate "C",
    alter column correlation_id type text collate "C";
-- Aggregate ids are UUIDs, unique across aggregate types: leading with the type (three values)
-- only made every comparison of the index build fall through to the id.
drop index audit_log_by_aggregate;
create index audit_log_by_aggregate on audit_log (aggregate_id, tx_id, global_position);
-- recorded_at grows with the log: a BRIN index summarises it in kilobytes and builds in a blink.
drop index audit_log_by_time;
create index audit_log_by_time on audit_log using brin (recorded_at);
