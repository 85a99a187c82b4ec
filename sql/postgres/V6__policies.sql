-- Client policies (per client type: lifetimes and token binding). The
-- current policy of each type, as the last `policy_changed` event set it;
-- no row: the settings' defaults. Written in the event's transaction.
CREATE TABLE policies (
    client_type TEXT   PRIMARY KEY,
    policy      TEXT   NOT NULL,
    seq         BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- What each session was given at login, fixed for its life (JSON: its
-- lifetimes, its binding: a keyed digest of the network, the DPoP key's
-- thumbprint). NULL for sessions from before policies: the settings'.
ALTER TABLE sessions ADD COLUMN terms TEXT;

-- DPoP proofs seen (a digest of key and jti), for a fleet without Redis:
-- a proof is refused by every instance after its first use. Swept once
-- expired (a proof's window is two minutes).
CREATE TABLE dpop_proofs (
    key        TEXT   PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
