//! The weir command line.
