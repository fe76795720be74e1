-- Several sites on one installation: every gateway, webinar and live event belongs to one (events
-- from before sites belong to `default`), and every query is scoped by the caller's site.
alter table gateways    add column site text not null default 'default';
alter table webinars    add column site text not null default 'default';
alter table live_events add column site text not null default 'default';
create index live_events_by_site on live_events (site, starts_at, live_event_id);

-- The site of each aggregate, as the audit log's projector learns it from the event that starts
-- the aggregate: auditors read their own site's events only. (Its own table: it never reads
-- another projector's.)
create table audit_sites
(
    aggregate_id text primary key,
    site         text not null
);
