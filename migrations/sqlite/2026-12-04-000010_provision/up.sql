-- Hosts provisioned over the network: each machine seen booting (by its MAC) and where it is on
-- its way to become a host. A join token is kept as its SHA-256 only, one at a time per machine,
-- until it is used or expires. `host_id` is set once the machine joined (and is the host's).
CREATE TABLE provision_machines (
    mac TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    approved BOOLEAN NOT NULL,
    address TEXT,
    gateway TEXT,
    token_sha256 TEXT,
    token_expires_at TIMESTAMP,
    host_id BIGINT,
    stage TEXT NOT NULL,
    message TEXT NOT NULL,
    first_seen_at TIMESTAMP NOT NULL,
    last_seen_at TIMESTAMP NOT NULL
);
