DROP TABLE operations;
DROP TABLE host_reservations;
DROP TABLE vps_claims;
ALTER TABLE vpses DROP COLUMN desired_state;
ALTER TABLE hosts DROP COLUMN max_transfers;
