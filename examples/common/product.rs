//! Recall (the product) as the benchmarks configure it: from the flags
//! they pass, never from the calling shell's `RECALL_*` variables.
//! Imports only `recall::config`.

use recall::config::Settings;

/// Recall's settings from command-line flags.
pub fn product_settings(flags: &[String]) -> anyhow::Result<Settings> {
    Ok(Settings::from_flags(flags)?)
}

/// `RECALL_*` variables of the calling shell must not change what is measured.
pub fn clear_recall_env() {
    for (key, _) in std::env::vars() {
        if key.starts_with("RECALL_") && !key.starts_with("RECALL_TEST_") {
            std::env::remove_var(key);
        }
    }
}
