DROP TABLE provision_machines;
