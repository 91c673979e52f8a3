-- netMON's decision state (hosts suspected or fenced, failovers under way, stale copies to
-- remove), written before its decisions are carried out, so that a controller started again
-- (or its partner taking over) carries on from it. One row (id 1): the state as JSON, and the
-- instant it was written on netMON's clock and on the wall clock.
CREATE TABLE netmon_state (
    id BIGINT PRIMARY KEY,
    manager TEXT NOT NULL,
    saved_ms BIGINT NOT NULL,
    saved_at TIMESTAMP NOT NULL
);
