DROP TABLE host_rollups;
