-- 1: the session key was derived without the node; 2: with it (formats.md).
ALTER TABLE audit_sessions ADD COLUMN kdf INTEGER NOT NULL DEFAULT 1;
