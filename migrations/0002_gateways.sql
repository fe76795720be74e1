-- Gateway tokens live here, never in the event log: events carry only the fingerprint. A row is
-- written before the event that names it, keyed by (gateway, fingerprint), so a command that fails
-- after writing it leaves an unreferenced row, never a wrong token.
create table gateway_secrets
(
    gateway_id  uuid        not null,
    fingerprint text        not null,
    -- The fingerprint is sha256(salt || token): without the salt it cannot be brute-forced, even
    -- for a short token like SIPMediaGW's default "1234".
    salt        text        not null,
    token       text        not null,
    created_at  timestamptz not null default now(),
    primary key (gateway_id, fingerprint)
);

-- No two gateways share a SIPMediaGW URL. A claim is taken before the event is written and
-- released when the gateway moves to another URL or is retired.
create table gateway_url_claims
(
    sipmediagw_url text primary key,
    gateway_id     uuid        not null,
    claimed_at     timestamptz not null default now()
);

-- Read model: the gateways, as administrators see them. No token.
create table gateways
(
    gateway_id        uuid primary key,
    name              text        not null,
    rtmp_url          text        not null,
    hls_url           text        not null,
    broadcaster       text        not null,
    sipmediagw_url    text        not null,
    api               text        not null check (api in ('LEGACY', 'GATEWAY')),
    has_token         boolean     not null,
    enabled           boolean     not null,
    retired           boolean     not null,
    disabled_reason   text,
    version           bigint      not null,
    registered_at     timestamptz not null,
    updated_at        timestamptz not null
);
create index gateways_by_name on gateways (name);
