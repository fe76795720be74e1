-- Read models for analysts: per-webinar figures and per-gateway, per-day utilization.
create table webinar_stats
(
    webinar_id        uuid primary key,
    title             text        not null,
    owner_id          text        not null,
    gateway_id        uuid        not null,
    scheduled_start   timestamptz not null,
    scheduled_minutes integer     not null,
    status            text        not null,
    -- PRESENTER, BBB_CALLBACK, POLL, SLOT_OVER, or CANCELLED.
    ended_how         text,
    started_at        timestamptz,
    first_live_at     timestamptz,
    -- Start of the stream interval in progress, if the stream is live now.
    live_since        timestamptz,
    live_seconds      bigint      not null default 0,
    stream_failures   integer     not null default 0,
    restarts          integer     not null default 0,
    failovers         integer     not null default 0,
    chat_posted       integer     not null default 0,
    chat_relayed      integer     not null default 0,
    chat_failed       integer     not null default 0
);
create index webinar_stats_by_start on webinar_stats (scheduled_start);

-- Which webinar a chat message belongs to (relay outcomes do not say).
create table webinar_stats_messages
(
    message_id uuid primary key,
    webinar_id uuid not null
);

-- One row per gateway and UTC day.
create table gateway_utilization
(
    gateway_id       uuid   not null,
    day              date   not null,
    reserved_minutes bigint not null default 0,
    live_seconds     bigint not null default 0,
    failures         integer not null default 0,
    primary key (gateway_id, day)
);
create index gateway_utilization_by_day on gateway_utilization (day);

-- The reservations as the utilization projector last saw them (to undo a replaced one).
create table gateway_utilization_reservations
(
    gateway_id uuid        not null,
    webinar_id uuid        not null,
    starts_at  timestamptz not null,
    minutes    bigint      not null,
    primary key (gateway_id, webinar_id)
);
