-- Chat rate limits shared by every instance (owner: infra::chat::ChatRateLimiter).
-- One row per limited scope (`author:<id>`, `webinar:<uuid>`), holding the generic cell rate
-- algorithm's "theoretical arrival time": a post is admitted when it would not push `tat` more than
-- one window ahead of now. A row whose `tat` has passed limits nothing and may be deleted.
create table chat_rate_limits (
    scope text collate "C" primary key,
    tat   timestamptz not null
);
create index chat_rate_limits_by_tat on chat_rate_limits (tat);

-- The per-owner quota counts an owner's scheduled and live webinars (owner: projector `webinars`).
create index webinars_upcoming_by_owner on webinars (owner_id) where status in ('SCHEDULED', 'LIVE');
