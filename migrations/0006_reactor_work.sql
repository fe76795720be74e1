-- Work a reactor has taken from the log and not finished yet. The reactor's checkpoint moves past
-- an event in the same transaction that writes its row here, so an effect is always either done or
-- durably scheduled; a row leaves when the effect is done (or given up). Rows of one lane are
-- handled in log order, lanes concurrently; a retry waits for `next_attempt_at` without holding
-- up any other lane, across restarts and a change of leader.
create table reactor_work
(
    consumer        text        not null,
    tx_id           xid8        not null,
    global_position bigint      not null,
    -- Events of one lane (usually one aggregate) are handled one at a time, in log order.
    lane            text        not null,
    attempts        integer     not null default 0,
    next_attempt_at timestamptz not null default now(),
    last_error      text,
    created_at      timestamptz not null default now(),
    primary key (consumer, global_position)
);
create index reactor_work_in_log_order on reactor_work (consumer, tx_id, global_position);
