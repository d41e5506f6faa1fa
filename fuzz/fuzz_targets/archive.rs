//! Process code as deployed: an archive `validate_archive` accepts is then
//! unpacked as prepare does, into a fresh temporary directory.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if nimbus_process::validate_archive(data).is_err() {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let archive = dir.path().join("code.bin");
    std::fs::write(&archive, data).expect("write the archive");
    let code_root = dir.path().join("code");
    let _ = nimbus_process::fuzzing::unpack_once(&archive, &code_root, "00");
});
