-- How each running stream looks from the audience's side (`StreamHealthChanged`), in the two read
-- models that show a stream.
alter table webinars
    add column stream_health        text not null default 'UNKNOWN',
    add column stream_health_detail text;
alter table live_events
    add column stream_health        text not null default 'UNKNOWN',
    add column stream_health_detail text;

-- Who is watching, per webinar and per server instance: each instance writes its own open
-- `watching` subscriptions' count, again before `expires_at`; a crashed instance's rows expire.
-- Not events: a heartbeat is not history.
create table audience_presence
(
    webinar_id  uuid        not null,
    instance_id uuid        not null,
    viewers     integer     not null check (viewers >= 0),
    expires_at  timestamptz not null,
    primary key (webinar_id, instance_id)
);

-- The on-air view counts the messages still waiting to be relayed.
create index chat_messages_waiting on chat_messages (webinar_id) where status = 'POSTED';
