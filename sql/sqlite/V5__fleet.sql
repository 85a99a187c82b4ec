-- G13 One fleet, one configuration: the first instance on this database
-- records the issuer, audience and master-key fingerprint (an HMAC of a
-- fixed label, never the key) that every later instance must share. One
-- row (id = 1). `recall admin set-issuer` moves the issuer and keeps the
-- ones before it (a JSON array of strings), whose tokens still verify.
-- Enforced on PostgreSQL only; SQLite has the table so the schemas stay
-- parallel.
CREATE TABLE fleet (
    id               INTEGER PRIMARY KEY,
    issuer           TEXT   NOT NULL,
    audience         TEXT   NOT NULL,
    key_fingerprint  TEXT   NOT NULL,
    previous_issuers TEXT   NOT NULL DEFAULT '[]',
    recorded_at      INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
