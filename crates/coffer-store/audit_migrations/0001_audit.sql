-- The audit trail, in its own database file: append-only by trigger.

-- A writer session: the X25519 public key its record key was agreed with.
CREATE TABLE audit_sessions (
    id          INTEGER PRIMARY KEY,
    key_version INTEGER NOT NULL,
    public      BLOB NOT NULL,
    started     INTEGER NOT NULL,
    node        TEXT NOT NULL
);

-- seq ‖ session ‖ prev (link hash of seq-1) ‖ sealed record
CREATE TABLE audit_records (
    seq     INTEGER PRIMARY KEY,
    session INTEGER NOT NULL,
    prev    BLOB NOT NULL,
    payload BLOB NOT NULL
);

-- Ed25519-signed chain heads.
CREATE TABLE audit_checkpoints (
    seq       INTEGER PRIMARY KEY,
    head      BLOB NOT NULL,
    time      INTEGER NOT NULL,
    signature BLOB NOT NULL
);

CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER audit_records_no_delete BEFORE DELETE ON audit_records
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
