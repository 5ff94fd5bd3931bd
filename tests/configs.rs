//! Every file in tests/configs/invalid makes the real binary exit 2 with a
//! message naming the file and what is wrong (the expected text is the
//! first line's comment); every file in tests/configs/valid loads.

use std::path::{Path, PathBuf};
use std::process::Command;

fn files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/configs")
        .join(dir);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no configs in {}", dir.display());
    v
}

#[test]
fn invalid_configs_exit_2_naming_file_and_problem() {
    let data = tempfile::tempdir().unwrap();
    for path in files("invalid") {
        let text = std::fs::read_to_string(&path).unwrap();
        let expected = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# "))
            .unwrap_or_else(|| panic!("{}: first line must be `# expected text`", path.display()));
        let out = Command::new(env!("CARGO_BIN_EXE_offboard"))
            .args(["scan", "dana.whitfield@example.com", "--config"])
            .arg(&path)
            .env("OFFBOARD_DATA", data.path())
            .env_remove("OFFBOARD_CONFIG")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {stderr}", path.display());
        assert!(
            stderr.contains(expected),
            "{}: expected `{expected}` in: {stderr}",
            path.display()
        );
        let name = path.file_name().unwrap().to_string_lossy();
        assert!(
            stderr.contains(&*name),
            "{}: file not named in: {stderr}",
            path.display()
        );
        assert!(
            out.stdout.is_empty(),
            "{}: printed to stdout",
            path.display()
        );
    }
}

#[test]
fn valid_configs_load() {
    for path in files("valid") {
        let loaded =
            offboard::config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            !loaded.connectors().unwrap().is_empty(),
            "{}",
            path.display()
        );
    }
}
