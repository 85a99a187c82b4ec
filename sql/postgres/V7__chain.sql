-- The log's hash chain (tamper evidence, store::chain). Each event stores
-- the hash of the event before it (prev_hash) and its own (hash: SHA-256
-- over its stored columns, prev_hash included); the counter row keeps the
-- last event's hash (head, hex) next to its seq, locked with it, so every
-- append links to the one before in seq order. Events from before this
-- migration are chained by `recall migrate` right after it (null until then).
ALTER TABLE events ADD COLUMN prev_hash BYTEA;
ALTER TABLE events ADD COLUMN hash BYTEA;
ALTER TABLE recall_seq ADD COLUMN head TEXT;
CREATE INDEX events_unchained ON events (seq) WHERE hash IS NULL;
