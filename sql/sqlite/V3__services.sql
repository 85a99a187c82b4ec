-- Service credentials (verifiers, SSF receivers): the token is stored only
-- as its SHA-256; ending one is an event and sets revoked_at.
CREATE TABLE services (
    id         TEXT    PRIMARY KEY,
    name       TEXT    NOT NULL,
    token_hash BLOB    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
