//! Shared fixtures for the bulkhead benchmarks.
