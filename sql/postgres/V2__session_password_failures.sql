-- Wrong current passwords in a row sent from a session (password change):
-- the fifth revokes the session (G10).
ALTER TABLE sessions ADD COLUMN password_failures BIGINT NOT NULL DEFAULT 0;
