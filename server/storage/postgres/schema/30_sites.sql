-- Sites, their cameras, camera tokens and the evidence filed from them (PostgresSiteStore).
CREATE TABLE IF NOT EXISTS sites (
    id         text PRIMARY KEY,
    name       text NOT NULL,
    address    text,
    note       text,
    created_by text,
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL
);
CREATE TABLE IF NOT EXISTS cameras (
    id                     text PRIMARY KEY,
    site_id                text NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    name                   text NOT NULL,
    kind                   text NOT NULL,     -- phone | whip | rtsp
    rtsp_url               text,              -- without credentials
    rtsp_username          text,
    rtsp_password          text,              -- sealed by the sites domain
    station_stage          text,              -- receiving | packing | returns_qc; NULL: none
    station_idle_timeout_s double precision,
    enabled                boolean NOT NULL DEFAULT true,
    created_by             text,
    created_at             double precision NOT NULL,
    updated_at             double precision NOT NULL,
    last_seen_at           double precision
);
CREATE INDEX IF NOT EXISTS cameras_site ON cameras (site_id, created_at);
CREATE TABLE IF NOT EXISTS camera_tokens (
    id           text PRIMARY KEY,
    camera_id    text NOT NULL REFERENCES cameras (id) ON DELETE CASCADE,
    token_hash   text NOT NULL UNIQUE,
    created_by   text,
    created_at   double precision NOT NULL,
    expires_at   double precision,
    revoked_at   double precision,
    last_used_at double precision
);
CREATE INDEX IF NOT EXISTS camera_tokens_camera ON camera_tokens (camera_id, created_at);
CREATE TABLE IF NOT EXISTS site_evidence (
    item_id    text PRIMARY KEY,              -- the evidence archive's item id
    site_id    text NOT NULL,
    camera_id  text NOT NULL,
    case_id    text,
    operator   text NOT NULL,
    created_at double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS site_evidence_site ON site_evidence (site_id, created_at);
