-- Staff users, their sessions and API tokens (PostgresAccountStore). Secrets are kept as
-- digests (sessions, tokens) or scrypt hashes (passwords), never as themselves.
CREATE TABLE IF NOT EXISTS users (
    id            text PRIMARY KEY,
    username      text NOT NULL,
    name          text NOT NULL,
    role          text NOT NULL,
    password_hash text NOT NULL,
    created_at    double precision NOT NULL,
    disabled      boolean NOT NULL DEFAULT false
);
-- Unique regardless of case, as SQLite's COLLATE NOCASE (ASCII folding is what both share for
-- the usernames the accounts domain accepts).
CREATE UNIQUE INDEX IF NOT EXISTS users_username ON users (lower(username));
-- A signed-in browser: each request looks its session up by the digest of the cookie's
-- secret, so an ended session is refused by every node at once.
CREATE TABLE IF NOT EXISTS sessions (
    id          text PRIMARY KEY,
    user_id     text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash  text NOT NULL UNIQUE,
    created_at  double precision NOT NULL,
    expires_at  double precision NOT NULL,
    revoked_at  double precision
);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user_id, revoked_at);
CREATE INDEX IF NOT EXISTS sessions_expiry ON sessions (expires_at);
CREATE TABLE IF NOT EXISTS api_tokens (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    role        text NOT NULL,
    token_hash  text NOT NULL UNIQUE,
    created_by  text,
    created_at  double precision NOT NULL,
    revoked_at  double precision
);
