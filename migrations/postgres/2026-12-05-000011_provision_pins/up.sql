-- A machine's join is kept (the host key and address it joined with) so a join whose answer
-- was lost can be answered again, and a join a controller crash interrupted is finished at the
-- next start. `image_id` is the host image the machine boots: chosen when it first boots, kept
-- across reboots, changed only by a re-image.
ALTER TABLE provision_machines ADD COLUMN join_host_key TEXT;
ALTER TABLE provision_machines ADD COLUMN join_address TEXT;
ALTER TABLE provision_machines ADD COLUMN image_id TEXT;
