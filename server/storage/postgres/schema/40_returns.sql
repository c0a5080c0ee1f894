-- Returns operations (PostgresRulesStore, PostgresAnalyticsStore): the versions of the rule
-- table, units sold, and raised alerts. The analytics charts are summed from the cases and
-- sales themselves (PostgreSQL's aggregates over these indexes), so there are no rollups.
CREATE TABLE IF NOT EXISTS return_rules (
    version    integer PRIMARY KEY,       -- return-rules/<version>; every change is a new one
    body       text NOT NULL,             -- JSON: {rules: [...], alerts: [...]}
    author     text NOT NULL,
    note       text,
    created_at double precision NOT NULL
);
CREATE TABLE IF NOT EXISTS sales (
    day      text NOT NULL,               -- YYYY-MM-DD (UTC)
    sku      text NOT NULL,
    category text,
    country  text NOT NULL DEFAULT '',
    units    bigint NOT NULL,
    PRIMARY KEY (sku, day, country)
);
CREATE INDEX IF NOT EXISTS sales_day ON sales (day);
CREATE TABLE IF NOT EXISTS return_alerts (
    id         text PRIMARY KEY,
    rule_id    text NOT NULL,
    version    integer NOT NULL,
    subject    text NOT NULL,             -- what it is about: a SKU, a carrier
    period     text NOT NULL,             -- the window it was raised for (YYYY-MM-DD..YYYY-MM-DD)
    data       text NOT NULL,             -- JSON: the figures that raised it
    raised_at  double precision NOT NULL,
    UNIQUE (rule_id, subject, period)
);
CREATE INDEX IF NOT EXISTS return_alerts_raised ON return_alerts (raised_at);
-- A SKU's return cases, found without walking the year (cases_returns serves the others).
CREATE INDEX IF NOT EXISTS cases_returns_sku ON cases (kind, sku, created_at);
