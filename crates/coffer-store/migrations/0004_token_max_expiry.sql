-- Coffer schema v4: the latest a token may be renewed to (Unix seconds): its
-- creation plus the smaller of its explicit_max_ttl and the system maximum.
-- NULL on older rows: creation plus the system maximum applies.
ALTER TABLE tokens ADD COLUMN max_expires INTEGER;
