-- Capacity warnings (read by `projections::capacity`; the `webinars` projector owns the table).
-- The webinars that hold a gateway, by time: the monitor reads the coming days every minute, and
-- ended or cancelled webinars, the bulk of the table over the years, are not in this index.
create index webinars_booked_by_time on webinars (starts_at, ends_at)
    where status in ('SCHEDULED', 'LIVE');
-- Live webinars whose stream failed for good or cannot be watched, by gateway: what makes a
-- gateway unhealthy.
create index webinars_ailing_live_by_gateway on webinars (gateway_id)
    where status = 'LIVE'
      and (stream_state = 'FAILED' or stream_health in ('STALLED', 'MISSING', 'NOT_HLS'));
