//! The fleet loader under arbitrary bytes (see `psql_fleet::fleetdir::fuzz` for how bytes
//! become a fleet tree and what every input must give).
#![no_main]

use libfuzzer_sys::fuzz_target;
use psql_fleet::fleetdir::fuzz::{check, tree_from_bytes};

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = check(&tree_from_bytes(data)) {
        panic!("{broken}");
    }
});
