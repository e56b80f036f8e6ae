//! The fleet loader under arbitrary bytes (see `fleet_core::fleetdir::fuzz` for how bytes
//! become a fleet tree and what every input must give).
#![no_main]

use libfuzzer_sys::fuzz_target;
use fleet_core::fleetdir::fuzz::{check, tree_from_bytes};

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = check(&tree_from_bytes(data)) {
        panic!("{broken}");
    }
});
