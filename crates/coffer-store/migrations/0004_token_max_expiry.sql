-- Coffer schema v4: the latest a token may be renewed to (Unix seconds): its
-- creation plus the smaller of its explicit_max_ttl and the system maximum.
-- NULL on older rows: creation plus the system maximum applies.
ALTER TABLE tokens ADD COLUMN max_expires INTEGER;
-- The scheduler revokes expired tokens (and their children) by expiry.
CREATE INDEX tokens_expires ON tokens (expires);
