//! Checkpoints on storage: the store trait (local files and S3), object keys, `_metadata`, state files,
//! savepoints, the coordinator's bookkeeping and the pure decisions of what to restore and delete.

pub mod coordinator;
pub mod metadata;
pub mod paths;
pub mod restore;
pub mod retention;
pub mod s3;
pub mod savepoint;
pub mod state_file;
pub mod store;
