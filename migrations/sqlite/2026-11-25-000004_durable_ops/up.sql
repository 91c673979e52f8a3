-- Durable operations: desired state apart from what hosts report, one claim per VPS as a row,
-- capacity reserved on a host for an operation bound there, and the step log of every
-- multi-step operation so that a controller that died mid-way finishes or unwinds it.
ALTER TABLE vpses ADD COLUMN desired_state TEXT NOT NULL DEFAULT 'stopped';
-- Root-filesystem streams at once on a host (each an SSH channel; OpenSSH allows 10 sessions
-- per connection by default).
ALTER TABLE hosts ADD COLUMN max_transfers INTEGER NOT NULL DEFAULT 4;
UPDATE vpses SET desired_state = 'running' WHERE status IN ('running', 'moving');

-- A VPS with a row here has an operation in progress; a second claim fails on the key.
CREATE TABLE vps_claims (
    vps_id BIGINT PRIMARY KEY,
    task_id BIGINT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    operation TEXT NOT NULL,
    claimed_at TIMESTAMP NOT NULL
);
CREATE INDEX vps_claims_task ON vps_claims(task_id);

-- Capacity a VPS will take on a host it is not placed on yet (a move's target).
CREATE TABLE host_reservations (
    task_id BIGINT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    host_id BIGINT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    vps_id BIGINT NOT NULL,
    PRIMARY KEY (task_id, host_id, vps_id)
);

-- One row per multi-step operation: what it was asked, the last step it completed, and
-- whether it is going forward, unwinding, or done.
CREATE TABLE operations (
    task_id BIGINT PRIMARY KEY REFERENCES tasks(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    vps_id BIGINT NOT NULL,
    params TEXT NOT NULL,
    step TEXT NOT NULL,
    phase TEXT NOT NULL,
    -- The controller run driving it; another run's operations are left over and recovered.
    owner TEXT NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX operations_phase ON operations(phase);
