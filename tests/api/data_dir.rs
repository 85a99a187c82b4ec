//! What a killed start can leave in RECALL_DATA_DIR (G11): the generated
//! master key is written all or nothing, so a kill never leaves a
//! half-written key; an empty key file left by an older build's killed
//! start is replaced while nothing can have been sealed with it, and
//! refused, naming what to do, once the database holds data.

use recall::config::Settings;
use recall::keys::MasterKey;

use crate::helpers::TempDir;

fn settings(data: &std::path::Path) -> Result<Settings, String> {
    Settings::from_flags(["--data-dir", data.to_str().unwrap()]).map_err(|e| e.to_string())
}

/// A kill between creating `master.key` and writing it left it empty: with
/// no database yet, the next start makes a key and starts.
#[test]
fn an_empty_master_key_without_a_database_is_replaced() {
    let dir = TempDir::new();
    let data = dir.0.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("master.key"), "").unwrap();
    let s = settings(&data).expect("start after an interrupted first start");
    let on_disk = std::fs::read_to_string(data.join("master.key")).unwrap();
    let on_disk = MasterKey::parse(&on_disk).unwrap().to_base64();
    assert_eq!(on_disk, s.master_key.to_base64());
    // And it is the same key on the next start.
    assert_eq!(settings(&data).unwrap().master_key.to_base64(), on_disk);
}

/// With a database beside it, an empty key file is refused with a message
/// that says what to do (a new key could not open what is sealed there).
#[test]
fn an_empty_master_key_beside_a_database_is_refused() {
    let dir = TempDir::new();
    let data = dir.0.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("master.key"), "\n").unwrap();
    std::fs::write(data.join("recall.db"), b"SQLite format 3\0").unwrap();
    let err = settings(&data).expect_err("must refuse");
    assert!(
        err.contains("master.key") && err.contains("RECALL_MASTER_KEY"),
        "{err}"
    );
}

/// Leftovers of a write killed before its link (the temporary files) do
/// not matter, and no half-written `master.key` ever appears: starts racing
/// on one directory all end with the one key on disk.
#[test]
fn racing_first_starts_agree_on_one_whole_key() {
    for _ in 0..20 {
        let dir = TempDir::new();
        let data = dir.0.join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join(".master.key.0011223344556677.tmp"), "half").unwrap();
        let keys: Vec<String> = std::thread::scope(|scope| {
            let starts: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| settings(&data).map(|s| s.master_key.to_base64())))
                .collect();
            starts
                .into_iter()
                .map(|h| h.join().unwrap().expect("start"))
                .collect()
        });
        let on_disk = MasterKey::parse(&std::fs::read_to_string(data.join("master.key")).unwrap())
            .expect("a whole key on disk")
            .to_base64();
        for key in keys {
            assert_eq!(
                key, on_disk,
                "a start kept a key that is not the one on disk"
            );
        }
    }
}
