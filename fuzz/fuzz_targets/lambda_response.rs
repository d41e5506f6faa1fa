//! A Lambda handler's return value (JSON), turned into the HTTP response.
//! The first byte picks the body limit, so both sides of it are reached.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&limit, json)) = data.split_first() else {
        return;
    };
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(json) else {
        return;
    };
    let _ = nimbus_process::fuzzing::lambda_response(value, u64::from(limit) * 16);
});
