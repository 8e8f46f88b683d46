-- Tenants (namespaces), their tombstones, and indexed rotation deadlines.

CREATE TABLE namespaces (
    name     TEXT PRIMARY KEY,
    id       TEXT NOT NULL,
    created  INTEGER NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    -- when the tenant key is next due for rotation (unix seconds); NULL = never
    next_rotation INTEGER
);

-- A shredded tenant; outlives everything it had.
CREATE TABLE tombstones (
    name     TEXT NOT NULL,
    id       TEXT NOT NULL,
    shredded INTEGER NOT NULL,
    by_who   TEXT NOT NULL,
    PRIMARY KEY (name, id)
);

ALTER TABLE transit_keys ADD COLUMN next_rotation INTEGER;
CREATE INDEX transit_keys_next_rotation ON transit_keys (next_rotation) WHERE next_rotation IS NOT NULL;
CREATE INDEX namespaces_next_rotation ON namespaces (next_rotation) WHERE next_rotation IS NOT NULL;
