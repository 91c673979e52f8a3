-- A token made with another token: it never outlives it, and is revoked with it.
ALTER TABLE api_tokens ADD COLUMN parent_token_id INTEGER NULL;
-- VPSes run unprivileged, each with a range of host ids of its own starting at id_base.
-- Those made before were privileged (their files carry unmapped ids), and stay so.
ALTER TABLE vpses ADD COLUMN privileged BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE vpses ADD COLUMN id_base BIGINT NULL;
UPDATE vpses SET privileged = TRUE;
CREATE UNIQUE INDEX vpses_id_base ON vpses (id_base);
