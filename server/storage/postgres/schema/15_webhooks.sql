-- Webhook targets and the outbox (PostgresWebhookStore).
CREATE TABLE IF NOT EXISTS webhooks (
    id         text PRIMARY KEY,
    url        text NOT NULL,
    secret     text NOT NULL,
    created_by text,
    created_at double precision NOT NULL
);
CREATE TABLE IF NOT EXISTS webhook_outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id     text NOT NULL UNIQUE,
    event_id        text NOT NULL,
    event           text NOT NULL,
    case_id         text NOT NULL,
    webhook_id      text,
    url             text NOT NULL,
    body            text NOT NULL,
    status          text NOT NULL DEFAULT 'pending',
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at double precision NOT NULL,
    last_error      text,
    created_at      double precision NOT NULL,
    finished_at     double precision,
    -- Until when a node holds this delivery (PostgresWebhookStore.claim_due); NULL: nobody.
    claimed_until   double precision
);
CREATE INDEX IF NOT EXISTS webhook_outbox_pending ON webhook_outbox (webhook_id, url, case_id, id)
    WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS webhook_outbox_finished ON webhook_outbox (finished_at)
    WHERE status <> 'pending';
