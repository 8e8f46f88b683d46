-- Coffer schema v2: client-certificate roles for the cert auth method.
-- Certificates here are public (CA or leaf PEM); no key material.
CREATE TABLE cert_roles (
    -- the tenant (namespace) the role logs into; "" is the root tenant
    tenant               TEXT NOT NULL,
    name                 TEXT NOT NULL,
    certificate          TEXT NOT NULL,
    -- JSON arrays of glob patterns; empty = any
    allowed_common_names TEXT NOT NULL,
    allowed_dns_sans     TEXT NOT NULL,
    -- JSON array of policy names
    policies             TEXT NOT NULL,
    -- token TTL in seconds; 0 = the default
    ttl                  INTEGER NOT NULL,
    display_name         TEXT NOT NULL,
    created              INTEGER NOT NULL,
    PRIMARY KEY (tenant, name)
);
