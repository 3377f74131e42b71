//! ringkv-tests: cross-crate tests live in `tests/tests/`; this library only hosts shared helpers.
#![forbid(unsafe_code)]
