-- One row per host and minute: average and maximum of that minute's samples (netRES history).
CREATE TABLE host_rollups (
    host_id BIGINT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    minute TIMESTAMP NOT NULL,
    samples INTEGER NOT NULL,
    cpu_avg DOUBLE PRECISION NOT NULL,
    cpu_max DOUBLE PRECISION NOT NULL,
    memory_avg DOUBLE PRECISION NOT NULL,
    memory_max DOUBLE PRECISION NOT NULL,
    load_avg DOUBLE PRECISION NOT NULL,
    load_max DOUBLE PRECISION NOT NULL,
    rx_avg DOUBLE PRECISION NOT NULL,
    rx_max DOUBLE PRECISION NOT NULL,
    tx_avg DOUBLE PRECISION NOT NULL,
    tx_max DOUBLE PRECISION NOT NULL,
    disk_read_avg DOUBLE PRECISION NOT NULL,
    disk_read_max DOUBLE PRECISION NOT NULL,
    disk_write_avg DOUBLE PRECISION NOT NULL,
    disk_write_max DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (host_id, minute)
);
CREATE INDEX host_rollups_minute ON host_rollups (minute);
