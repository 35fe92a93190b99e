//! The worker: parse -> flow -> verdict -> forward or drop.
