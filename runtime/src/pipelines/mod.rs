//! Pipelines shipped in the weir binary.
