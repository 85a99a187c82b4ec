-- The event log, its sequence counter and the read models it feeds.
-- Times are milliseconds since the Unix epoch; ids are UUID text. The same
-- shapes are used by the SQLite schema so one set of queries serves both.

-- One row whose update, inside every appending transaction, assigns the
-- sequence. The row lock is held until commit, so commit order equals
-- sequence order (G6) and a rolled-back append leaves no hole.
CREATE TABLE recall_seq (
    id   BIGINT PRIMARY KEY,
    last BIGINT NOT NULL
);
INSERT INTO recall_seq (id, last) VALUES (1, 0);

CREATE TABLE events (
    seq        BIGINT PRIMARY KEY,
    stream     TEXT   NOT NULL,
    type       TEXT   NOT NULL,
    version    BIGINT NOT NULL,
    at         BIGINT NOT NULL,
    actor      TEXT,
    ip         TEXT,
    user_id    TEXT,
    session_id TEXT,
    data       TEXT   NOT NULL
);
CREATE INDEX events_at ON events (at);
CREATE INDEX events_user ON events (user_id, seq);
CREATE INDEX events_type ON events (type, seq);

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT   NOT NULL UNIQUE,
    password_hash TEXT   NOT NULL,
    roles         TEXT   NOT NULL,
    created_at    BIGINT NOT NULL,
    locked_until  BIGINT
);

CREATE TABLE sessions (
    id                 TEXT PRIMARY KEY,
    user_id            TEXT   NOT NULL,
    client_type        TEXT   NOT NULL,
    device_id          TEXT,
    ip                 TEXT,
    user_agent         TEXT,
    created_at         BIGINT NOT NULL,
    refresh_expires_at BIGINT NOT NULL,
    revoked_at         BIGINT
);
CREATE INDEX sessions_user ON sessions (user_id);

-- Every refresh token ever issued, by SHA-256 hash only; spent ones are kept
-- until their session expires so that reuse is recognised as theft.
CREATE TABLE refresh_tokens (
    hash       BYTEA PRIMARY KEY,
    session_id TEXT   NOT NULL,
    issued_at  BIGINT NOT NULL,
    spent_at   BIGINT
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

-- Failed-login counters per lowercased username, known or not.
CREATE TABLE login_throttle (
    username     TEXT PRIMARY KEY,
    failures     BIGINT NOT NULL,
    lock_count   BIGINT NOT NULL,
    locked_until BIGINT
);

-- Signing keys; the private half only as nonce || ChaCha20-Poly1305 ciphertext.
CREATE TABLE signing_keys (
    kid             TEXT PRIMARY KEY,
    alg             TEXT   NOT NULL,
    public_key      BYTEA  NOT NULL,
    private_key_enc BYTEA  NOT NULL,
    status          TEXT   NOT NULL,
    created_at      BIGINT NOT NULL,
    retire_after    BIGINT
);
