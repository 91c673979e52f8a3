-- Failover drills: a VPS's newest restore point brought up on another host in an isolated
-- network (its container and network named from the drill's id on that host), netMON's checks
-- run against it, then all of it removed. `state`: running, passed, failed. RTO: from the
-- restore's start until the checks passed; RPO: how old the point was when the drill began.
-- `cleaned`: the copy and its network are gone from the host (a drill cut short by a
-- controller's crash is cleaned up when its host answers). No foreign keys: a drill's record
-- outlives its VPS or host, and its clean-up must not be lost with them.
CREATE TABLE drills (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    vps_id BIGINT NOT NULL,
    vps_name TEXT NOT NULL,
    host_id BIGINT NOT NULL,
    host_name TEXT NOT NULL,
    task_id BIGINT,
    cycle BIGINT NOT NULL,
    point_taken_at TIMESTAMP NOT NULL,
    started_by TEXT NOT NULL,
    state TEXT NOT NULL,
    started_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP,
    rto_ms BIGINT,
    rpo_ms BIGINT,
    message TEXT,
    cleaned BOOLEAN NOT NULL
);
CREATE INDEX drills_vps ON drills(vps_id, id);
CREATE INDEX drills_unclean ON drills(host_id) WHERE NOT cleaned;
