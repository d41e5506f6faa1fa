//! Host bindings of the capabilities world (`nimbus:platform/capabilities`
//! in `wit/`): one generation for every capability module to use.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "nimbus:platform/capabilities",
    imports: { default: async | trappable },
    with: {
        "wasi:keyvalue/store.bucket": crate::keyvalue::Bucket,
    },
    trappable_error_type: {
        "wasi:keyvalue/store.error" => crate::keyvalue::Fail,
    },
});
