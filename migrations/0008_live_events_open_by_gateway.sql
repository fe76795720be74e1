-- The live_events projector re-reads the open events of a gateway whose HLS URL or broadcaster
-- changes; without this index that lookup scans the whole table.
create index live_events_open_by_gateway on live_events (gateway_id)
    where status in ('UPCOMING', 'LIVE');
