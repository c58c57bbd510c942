//! The OpenAPI document the Worker serves: `src/api/openapi.json` (generated, committed, two-space
//! indents for reading and diffs) without its whitespace, which keeps about 3 KB of gzip out of
//! the wasm bundle. A native test checks the served text parses to the committed document.

fn main() {
    let src = "src/api/openapi.json";
    println!("cargo:rerun-if-changed={src}");
    let text = std::fs::read_to_string(src).expect("src/api/openapi.json is readable");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("src/api/openapi.json is JSON");
    let out = std::path::Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("openapi.min.json");
    std::fs::write(
        out,
        serde_json::to_string(&doc).expect("a document serializes"),
    )
    .expect("OUT_DIR is writable");
}
