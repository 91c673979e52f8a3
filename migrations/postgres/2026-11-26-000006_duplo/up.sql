-- netDUPLO: per VPS, duplication on or off; per completed cycle (a restore point in storage),
-- what it read and cost. Storage holds the points themselves; these rows describe them.
ALTER TABLE vpses ADD COLUMN duplo_enabled BOOLEAN NOT NULL DEFAULT TRUE;
CREATE TABLE duplo_points (
    id BIGSERIAL PRIMARY KEY,
    vps_id BIGINT NOT NULL,
    cycle BIGINT NOT NULL,
    host_id BIGINT NULL,
    taken_at TIMESTAMP NOT NULL,
    full_compare BOOLEAN NOT NULL,
    full_reason TEXT NULL,
    files BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    entries_read BIGINT NOT NULL,
    chunks_new BIGINT NOT NULL,
    bytes_new BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    freeze_ms BIGINT NOT NULL,
    consistent BOOLEAN NOT NULL
);
CREATE UNIQUE INDEX duplo_points_vps_cycle ON duplo_points (vps_id, cycle);
