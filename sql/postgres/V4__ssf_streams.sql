-- SSF 1.0 event streams: one per receiver registration. The cursor is the
-- last (seq, index) of the log's security events this stream has had
-- delivered (push) or acknowledged (poll): at least once, in log order.
CREATE TABLE ssf_streams (
    id                   TEXT   PRIMARY KEY,
    service_id           TEXT   NOT NULL,
    config               TEXT   NOT NULL,
    -- The delivery method, from config (urn:ietf:rfc:8935 push, 8936 poll).
    method               TEXT   NOT NULL,
    status               TEXT   NOT NULL,
    reason               TEXT,
    cursor_seq           BIGINT NOT NULL,
    cursor_index         BIGINT NOT NULL,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL,
    -- Push delivery: exactly one instance delivers a stream at a time (the
    -- lease), and a failing receiver is retried with backoff.
    lease_owner          TEXT,
    lease_until          BIGINT,
    failures             BIGINT NOT NULL DEFAULT 0,
    next_attempt_at      BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX ssf_streams_service ON ssf_streams (service_id);
