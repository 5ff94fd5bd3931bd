//! Embeds every connector manifest in `connectors/` (adding a manifest file
//! is all it takes to ship it).

use std::fmt::Write;

fn main() {
    println!("cargo:rerun-if-changed=connectors");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("connectors");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("connectors/ folder")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".toml").map(str::to_string)
        })
        .collect();
    names.sort();
    let mut out = String::from("&[\n");
    for n in &names {
        let _ = writeln!(
            out,
            "    ({n:?}, include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/connectors/{n}.toml\"))),"
        );
    }
    out.push_str("]\n");
    let path =
        std::path::Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("manifests.rs");
    std::fs::write(path, out).expect("write manifests.rs");
}
