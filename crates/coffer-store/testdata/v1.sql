-- A schema-v1 database (migration 0001 only) as Coffer wrote it, dumped with sqlite3's .dump:
-- the migration test loads it and opens it with the current code.
BEGIN TRANSACTION;
CREATE TABLE _sqlx_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    success BOOLEAN NOT NULL,
    checksum BLOB NOT NULL,
    execution_time BIGINT NOT NULL
);
INSERT INTO "_sqlx_migrations" VALUES(1,'init','2026-11-28 18:00:16',1,X'3F6A827F840423CB5739AA39584ABF5CCB4AC396D24BB8079AE5C66726796429A45AB9EF1BE76D15B21EE048C7DD8684',3430446);
CREATE TABLE meta (
    k TEXT PRIMARY KEY,
    v BLOB NOT NULL
);
INSERT INTO "meta" VALUES('seal',X'7B2274797065223A227368616D6972222C227365637265745F736861726573223A312C227365637265745F7468726573686F6C64223A317D');
CREATE TABLE mounts (
    namespace   TEXT NOT NULL,
    path        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    description TEXT NOT NULL,
    accessor    TEXT NOT NULL,
    created     INTEGER NOT NULL,
    PRIMARY KEY (namespace, path)
);
INSERT INTO "mounts" VALUES('','transit/','transit','','transit_0001',1700000000);
CREATE TABLE policies (
    namespace TEXT NOT NULL,
    name      TEXT NOT NULL,
    body      TEXT NOT NULL,
    PRIMARY KEY (namespace, name)
);
INSERT INTO "policies" VALUES('','app','path "transit/*" { capabilities = ["read"] }');
CREATE TABLE tenant_keys (
    namespace TEXT NOT NULL,
    version   INTEGER NOT NULL,
    created   INTEGER NOT NULL,
    wrapped   BLOB NOT NULL,
    PRIMARY KEY (namespace, version)
);
INSERT INTO "tenant_keys" VALUES('',1,1700000000,X'010203');
CREATE TABLE tokens (
    accessor     TEXT PRIMARY KEY,
    hash         BLOB NOT NULL UNIQUE,
    namespace    TEXT NOT NULL,
    parent       TEXT,
    policies     TEXT NOT NULL,
    display_name TEXT NOT NULL,
    created      INTEGER NOT NULL,
    -- the TTL the token was created (or last renewed) with, in seconds; 0 = none
    ttl          INTEGER NOT NULL,
    expires      INTEGER,
    -- uses left; 0 = unlimited
    num_uses     INTEGER NOT NULL,
    renewable    INTEGER NOT NULL,
    meta         TEXT NOT NULL
);
CREATE TABLE transit_key_versions (
    namespace TEXT NOT NULL,
    mount     TEXT NOT NULL,
    name      TEXT NOT NULL,
    version   INTEGER NOT NULL,
    -- which tenant key version wrapped this row
    kek_version INTEGER NOT NULL,
    wrapped   BLOB NOT NULL,
    PRIMARY KEY (namespace, mount, name, version)
);
INSERT INTO "transit_key_versions" VALUES('','transit','orders',1,1,X'0909');
CREATE TABLE transit_keys (
    namespace TEXT NOT NULL,
    mount     TEXT NOT NULL,
    name      TEXT NOT NULL,
    config    TEXT NOT NULL,
    PRIMARY KEY (namespace, mount, name)
);
INSERT INTO "transit_keys" VALUES('','transit','orders','{}');
CREATE INDEX tokens_parent ON tokens (parent);
COMMIT;
