ALTER TABLE provision_machines DROP COLUMN image_id;
ALTER TABLE provision_machines DROP COLUMN join_address;
ALTER TABLE provision_machines DROP COLUMN join_host_key;
