//! MD5 throughput: the md-5 crate one file at a time against `md5_lanes` hashing 1, 2 and 4
//! files together (not a test; see bench/README.md).
//!
//! `cargo run --release -p s3-connector-domain --example md5_lanes_bench [-- MIB_PER_FILE]`

use std::time::Instant;

use md5::{Digest, Md5};
use s3_connector_domain::inventory::md5_lanes::md5_of_each;

fn main() {
    let mib: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(64);
    let files: Vec<Vec<u8>> = (0..4u8)
        .map(|seed| (0..mib << 20).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect())
        .collect();
    let rate = |bytes: usize, started: Instant| bytes as f64 / started.elapsed().as_secs_f64() / 1e6;
    let started = Instant::now();
    let one: Vec<[u8; 16]> = files.iter().map(|f| Md5::digest(f).into()).collect();
    println!("md-5 crate, one file at a time: {:.0} MB/s", rate(4 * (mib << 20), started));
    for together in [1usize, 2, 4] {
        let started = Instant::now();
        let mut digests = Vec::new();
        for group in files.chunks(together) {
            let slices: Vec<&[u8]> = group.iter().map(Vec::as_slice).collect();
            digests.extend(md5_of_each(&slices));
        }
        assert_eq!(digests, one, "digests differ from the md-5 crate's");
        println!("md5_lanes, {together} together: {:.0} MB/s", rate(4 * (mib << 20), started));
    }
}
