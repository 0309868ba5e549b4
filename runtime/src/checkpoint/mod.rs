//! Checkpoints on storage: the store trait (local files and S3), object keys, `_metadata`, state files,
//! savepoints, parallel transfers, the coordinator's bookkeeping, fencing epochs, reserved ids, the deployments of a job,
//! and the pure decisions of what to restore ([`recovery`]) and delete ([`retention`]).

pub mod coordinator;
pub mod fence;
pub mod ids;
pub mod metadata;
pub mod paths;
pub mod recovery;
pub mod restore;
pub mod retention;
pub mod runs;
pub mod s3;
pub mod savepoint;
pub mod state_file;
pub mod store;
pub mod transfers;
