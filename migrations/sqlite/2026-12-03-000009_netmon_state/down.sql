DROP TABLE netmon_state;
