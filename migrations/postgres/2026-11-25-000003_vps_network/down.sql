ALTER TABLE hosts DROP COLUMN vps_gateway, DROP COLUMN vps_prefix_len, DROP COLUMN vps_bridge;
