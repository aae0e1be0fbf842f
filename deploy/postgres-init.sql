-- First start of the compose PostgreSQL: the two source IDBs beside the Info Mart.
CREATE DATABASE idb_voice;
CREATE DATABASE idb_mm;
