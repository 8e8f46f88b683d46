-- Coffer schema v5: a MAC over each key's stored settings (HMAC-SHA256 under
-- a key derived from the root key), so an edit of the file (a lowered
-- min_decryption_version, a postponed rotation) is refused, not obeyed.
-- NULL on older rows until the first unseal fills it in.
ALTER TABLE transit_keys ADD COLUMN config_mac BLOB;
