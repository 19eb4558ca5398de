#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    switchyard::proxy::fuzzing::request_head(data);
});
