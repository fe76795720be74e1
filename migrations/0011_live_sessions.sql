-- The BigBlueButton session of each webinar, for administrators (owner: projector
-- `live_sessions`). A row appears when the webinar is scheduled (it carries its title, room and
-- gateway) and becomes a session when the webinar starts (`meeting_id`, `started_at`); a cancelled
-- webinar's row is deleted.
create table live_sessions (
    webinar_id        uuid primary key,
    title             text not null,
    room              text not null,
    gateway_id        uuid not null,
    meeting_id        text collate "C",
    server            text,
    started_at        timestamptz,
    ended_at          timestamptz,
    running           boolean not null default false,
    -- [{user_id, name, moderator, streaming}], as BigBlueButton reported them.
    participants      jsonb not null default '[]',
    participant_count integer not null default 0,
    moderator_count   integer not null default 0,
    streaming_present boolean not null default false,
    -- The SIPMediaGW v1.8+ gateway container the stream runs on.
    gw_id             text,
    stream_state      text not null,
    version           bigint not null,
    updated_at        timestamptz not null
);
-- liveSessions pages: newest first.
create index live_sessions_page on live_sessions (started_at desc, webinar_id)
    where started_at is not null;
-- Which containers of a gateway streams hold.
create index live_sessions_held_gw_ids on live_sessions (gateway_id)
    where gw_id is not null and stream_state in ('STARTING', 'LIVE', 'STOPPING');

-- SIPMediaGW v1.8+ (owner: projector `gateways`): the launcher's gateway containers and the
-- browsing script its browser joins the meeting with.
alter table gateways
    add column gw_ids text[] not null default '{}',
    add column browsing_name text not null default 'bigbluebutton';

-- PROXY: SIPMediaGW v1.8+ behind its proxy (deploy/proxyAPI), which picks the container.
alter table gateways drop constraint gateways_api_check;
alter table gateways add constraint gateways_api_check check (api in ('LEGACY', 'GATEWAY', 'PROXY'));
