-- Messages sealed under each transit key version, counted ahead in blocks:
-- an upper bound, so a version is rotated out before its nonces could repeat.
ALTER TABLE transit_key_versions ADD COLUMN encryptions INTEGER NOT NULL DEFAULT 0;
