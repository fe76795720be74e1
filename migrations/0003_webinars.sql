-- Read model: which gateway holds which slot. The scheduler reads it to try likely-free gateways
-- first; the Gateway aggregate remains the judge of double booking.
create table gateway_reservations
(
    gateway_id uuid        not null,
    webinar_id uuid        not null,
    starts_at  timestamptz not null,
    ends_at    timestamptz not null,
    primary key (gateway_id, webinar_id),
    check (starts_at < ends_at)
);
create index gateway_reservations_by_time on gateway_reservations (gateway_id, starts_at, ends_at);
create index gateway_reservations_by_webinar on gateway_reservations (webinar_id);

-- Read model: webinars as their owners, presenters and administrators see them.
create table webinars
(
    webinar_id       uuid primary key,
    title            text        not null,
    description      text,
    owner_id         text        not null,
    owner_name       text        not null,
    -- [{"id": …, "name": …}], in the order given.
    presenters       jsonb       not null default '[]',
    -- Owner and presenter ids, for "my webinars" and permission checks by SQL.
    host_ids         text[]      not null,
    starts_at        timestamptz not null,
    ends_at          timestamptz not null,
    duration_minutes integer     not null,
    enable_chat      boolean     not null,
    restricted       boolean     not null,
    groups           text[]      not null default '{}',
    gateway_id       uuid        not null,
    room             text        not null,
    meeting_id       text,
    status           text        not null check (status in ('SCHEDULED', 'LIVE', 'ENDED', 'CANCELLED')),
    stream_state     text        not null check (stream_state in ('IDLE', 'STARTING', 'LIVE', 'STOPPING', 'STOPPED', 'FAILED')),
    stream_error     text,
    end_reason       text,
    version          bigint      not null,
    scheduled_at     timestamptz not null,
    updated_at       timestamptz not null
);
create index webinars_by_host on webinars using gin (host_ids);
create index webinars_by_start on webinars (starts_at, webinar_id);

-- Read model: the live page. One row per webinar (id = webinar id); cancelled ones stay, marked,
-- so that a page holding the id can tell the audience.
create table live_events
(
    live_event_id uuid primary key,
    title         text        not null,
    description   text,
    starts_at     timestamptz not null,
    ends_at       timestamptz not null,
    hls_url       text        not null,
    broadcaster   text        not null,
    gateway_id    uuid        not null,
    status        text        not null check (status in ('UPCOMING', 'LIVE', 'ENDED', 'CANCELLED')),
    stream_state  text        not null,
    chat_enabled  boolean     not null,
    restricted    boolean     not null,
    groups        text[]      not null default '{}',
    -- [{"id": …, "name": …}]: owner first, then presenters.
    presenters    jsonb       not null default '[]',
    host_ids      text[]      not null,
    version       bigint      not null,
    updated_at    timestamptz not null
);
create index live_events_by_start on live_events (starts_at, live_event_id);
create index live_events_by_status on live_events (status, starts_at);

-- The live_events projector's own copy of what it needs from gateways (it does not read another
-- projector's tables, whose progress it cannot know).
create table live_event_gateways
(
    gateway_id  uuid primary key,
    hls_url     text not null,
    broadcaster text not null
);

-- Read model: audience chat messages and what became of them.
create table chat_messages
(
    message_id     uuid primary key,
    webinar_id     uuid        not null,
    author_id      text        not null,
    author_name    text        not null,
    text           text        not null,
    posted_at      timestamptz not null,
    status         text        not null check (status in ('POSTED', 'RELAYED', 'FAILED')),
    failure_reason text,
    version        bigint      not null
);
create index chat_messages_by_webinar on chat_messages (webinar_id, posted_at);
