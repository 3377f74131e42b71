//! ringkv-net: the tokio driver that runs ringkv nodes on real sockets and files.
#![forbid(unsafe_code)]
