//! The example config shipped in examples/sandbox/ points at `offboard sandbox
//! --port 8700` and must stay what the sandbox itself would write. Run with
//! OFFBOARD_UPDATE_EXAMPLE=1 to regenerate it.

use std::path::Path;

use offboard::sandbox;

const BASE: &str = "http://127.0.0.1:8700";

#[test]
fn shipped_example_matches_the_sandbox() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sandbox");
    let expected_config = sandbox::demo_config(BASE, Path::new("."));
    let fresh = tempfile::tempdir().unwrap();
    sandbox::write_demo_keys(fresh.path()).unwrap();
    if std::env::var_os("OFFBOARD_UPDATE_EXAMPLE").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.toml"), &expected_config).unwrap();
        for entry in std::fs::read_dir(fresh.path()).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
    }
    let shipped = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    assert_eq!(
        shipped, expected_config,
        "run with OFFBOARD_UPDATE_EXAMPLE=1"
    );
    for entry in std::fs::read_dir(fresh.path()).unwrap() {
        let entry = entry.unwrap();
        let want = std::fs::read(entry.path()).unwrap();
        let got = std::fs::read(dir.join(entry.file_name())).unwrap_or_default();
        assert_eq!(got, want, "{:?} differs", entry.file_name());
    }
    // And it loads: every connector resolves.
    let loaded = offboard::config::load(&dir.join("config.toml")).unwrap();
    assert_eq!(loaded.connectors().unwrap().len(), 8);
}
