-- The schema's version history.
-- Run at every start inside the setup transaction (server/storage/postgres/database.py), after
-- the files before it in name order: every statement is idempotent, so a table added here for a
-- newly ported store appears in databases made before it (as SQLite's CREATE IF NOT EXISTS).
-- Types: times are double precision (seconds since the epoch, as SQLite's REAL), money is
-- decimal text (never a float at rest), JSON is the text the store wrote (read back exactly).
CREATE TABLE IF NOT EXISTS schema_version (
    version    integer PRIMARY KEY,
    applied_at double precision NOT NULL
);
