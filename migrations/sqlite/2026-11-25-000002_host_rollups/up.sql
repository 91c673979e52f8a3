-- One row per host and minute: average and maximum of that minute's samples (netRES history).
CREATE TABLE host_rollups (
    host_id BIGINT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    minute TIMESTAMP NOT NULL,
    samples INTEGER NOT NULL,
    cpu_avg REAL NOT NULL,
    cpu_max REAL NOT NULL,
    memory_avg REAL NOT NULL,
    memory_max REAL NOT NULL,
    load_avg REAL NOT NULL,
    load_max REAL NOT NULL,
    rx_avg REAL NOT NULL,
    rx_max REAL NOT NULL,
    tx_avg REAL NOT NULL,
    tx_max REAL NOT NULL,
    disk_read_avg REAL NOT NULL,
    disk_read_max REAL NOT NULL,
    disk_write_avg REAL NOT NULL,
    disk_write_max REAL NOT NULL,
    PRIMARY KEY (host_id, minute)
);
CREATE INDEX host_rollups_minute ON host_rollups (minute);
