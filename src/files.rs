//! Secrets at rest (G10): the data directory is owner-only (0700), and so
//! are the files in it (0600): the embedded log, its WAL, the master key.
//!
//! May import: random. The layers: docs/DESIGN.md, "Parts".

use std::path::Path;

/// Creates `dir` if needed and makes it owner-only (0700): it holds the
/// embedded log and the generated master key.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Creates `path` empty if missing and makes it owner-only (0600).
pub fn private_file(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    {
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)?;
    }
    Ok(())
}

/// Writes a new file, owner-only from its first byte, all or nothing and
/// never over an existing one (`AlreadyExists`). The text goes to a
/// temporary file beside it, is synced, and is then linked into place, so a
/// process killed at any point leaves either no file or the whole file,
/// never a half-written one; and of two processes racing, one wins and the
/// other reads the winner's.
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nonce: [u8; 8] = crate::random::bytes();
    let tmp = dir.join(format!(
        ".{name}.{}.tmp",
        nonce.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = (|| {
        let mut f = options.open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()
    })();
    // A link, unlike a rename, never replaces what is there.
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    linked?;
    // The new name itself must survive a crash.
    std::fs::File::open(dir)?.sync_all()
}
