-- Coffer schema v8: a MAC over each row that grants or routes access (tokens,
-- ACL policies, mounts, tenants, certificate roles), made and checked by the
-- server under a key derived from the root key, so an edit of the file (a
-- token given the root policy, a policy widened, a tenant re-enabled) is
-- refused, not obeyed. NULL on older rows until the first unseal fills it in.
ALTER TABLE tokens ADD COLUMN mac BLOB;
ALTER TABLE policies ADD COLUMN mac BLOB;
ALTER TABLE mounts ADD COLUMN mac BLOB;
ALTER TABLE namespaces ADD COLUMN mac BLOB;
ALTER TABLE cert_roles ADD COLUMN mac BLOB;
