//! ringkv-sim: the deterministic discrete-event simulator that drives ringkv nodes.
#![forbid(unsafe_code)]
