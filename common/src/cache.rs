//! Redis: the connection manager, sessions and rate-limit counters (Memorystore in production).
