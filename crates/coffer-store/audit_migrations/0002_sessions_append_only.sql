-- Sessions are kept as written, like the records they open.
CREATE TRIGGER audit_sessions_no_update BEFORE UPDATE ON audit_sessions
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER audit_sessions_no_delete BEFORE DELETE ON audit_sessions
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
