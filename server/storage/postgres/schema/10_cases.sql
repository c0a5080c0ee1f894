-- Cases and their timeline (PostgresCaseStore).
CREATE TABLE IF NOT EXISTS cases (
    id                 text PRIMARY KEY,
    -- Creation order, for ties of created_at (SQLite's rowid).
    seq                bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    kind               text NOT NULL,
    state              text NOT NULL,
    customer_name      text NOT NULL,
    customer_contact   text,
    order_id           text,
    sku                text,
    reason             text,
    tracking_number    text,
    unit_id            text,
    carrier            text,
    shipped_at         double precision,
    delivered_at       double precision,
    customer_locale    text,
    customer_time_zone text,
    claimed_reason     text,
    verified_reason    text,
    category           text,
    order_value        text,
    order_currency     text,
    country            text,
    intake             text,
    refund_state       text NOT NULL DEFAULT 'none',
    disposition        text,
    approval           text,
    final_grade        text,
    agent_id           text,
    decision           text,
    refund_amount      text,
    currency           text,
    facts              text,
    note               text,
    outcome            text,
    resolution_note    text,
    grading            text,
    created_at         double precision NOT NULL,
    waiting_at         double precision,
    in_call_at         double precision,
    decided_at         double precision,
    closed_at          double precision,
    updated_at         double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS cases_state ON cases (state, created_at, seq);
CREATE INDEX IF NOT EXISTS cases_created ON cases (created_at, seq);
CREATE INDEX IF NOT EXISTS cases_order ON cases (order_id);
CREATE INDEX IF NOT EXISTS cases_tracking ON cases (tracking_number);
CREATE INDEX IF NOT EXISTS cases_contact ON cases (customer_contact, created_at);
CREATE INDEX IF NOT EXISTS cases_returns ON cases (kind, created_at, seq);
CREATE TABLE IF NOT EXISTS case_events (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_id   text NOT NULL REFERENCES cases (id),
    at        double precision NOT NULL,
    type      text NOT NULL,
    actor     text NOT NULL,
    data      text NOT NULL,
    dedup_key text,
    UNIQUE (case_id, dedup_key)
);
CREATE INDEX IF NOT EXISTS case_events_case ON case_events (case_id, id);
