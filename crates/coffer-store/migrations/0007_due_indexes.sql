-- The scheduler walks due keys and tenants in (deadline, names) order, page by page.
DROP INDEX transit_keys_next_rotation;
DROP INDEX namespaces_next_rotation;
CREATE INDEX transit_keys_due ON transit_keys (next_rotation, namespace, mount, name) WHERE next_rotation IS NOT NULL;
CREATE INDEX namespaces_due ON namespaces (next_rotation, name) WHERE next_rotation IS NOT NULL;
