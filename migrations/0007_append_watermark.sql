-- A watermark that only our own appenders hold back (ARCHITECTURE.md section 3, revised).
--
-- Every transaction that appends events takes a shared transaction-level advisory lock before its
-- first write (this statement-level trigger fires before the INSERT writes anything, so the
-- transaction id is assigned after the lock is visible). A reader first computes the watermark in
-- a statement of its own: the oldest transaction id among the sessions holding that lock, or the
-- statement's snapshot xmax when none does; then, in a later statement (a later snapshot), it
-- reads only events below it. Transactions that append nothing (rebuilds, analysts' sessions,
-- other databases of the cluster) no longer hold readers back.
--
-- The lock's key, 1296000001, is below 2^31: pg_locks shows it as classid 0, objid 1296000001.
create function take_append_lock() returns trigger
    language plpgsql as
$$
begin
    perform pg_advisory_xact_lock_shared(1296000001);
    return null;
end;
$$;

create trigger events_take_append_lock
    before insert on events
    for each statement execute function take_append_lock();
