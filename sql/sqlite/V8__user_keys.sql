-- Erasure by crypto-shredding: each user's personal data in the log and the
-- sessions is sealed under the user's data key, stored here only wrapped
-- (ChaCha20-Poly1305 under a key derived from the master key). Erasing the
-- user deletes the row: what was sealed under it is unreadable for good.
CREATE TABLE user_keys (
    user_id TEXT  PRIMARY KEY,
    wrapped BLOB  NOT NULL
);

-- When the user was erased: the row stays (its id is in the log), its
-- username a tombstone, and no data key is ever made for it again.
ALTER TABLE users ADD COLUMN erased_at INTEGER;
