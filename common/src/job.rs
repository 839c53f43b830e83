//! The Cloud Run job contract: task index/count/attempt, sharding, run report, exit code.
