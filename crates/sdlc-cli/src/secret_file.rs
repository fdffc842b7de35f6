//! Secrets kept in files (`--token-file`, `--notify-slack-file`, `--notify-webhook-file`,
//! `webhook add --secret-file`): a secret on the command line shows in `ps` and shell
//! histories, one in a file (a secrets mount, a 0600 file) does not. A file others may read
//! is refused, since what it holds opens something.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, bail};

/// The non-empty lines of the secret file at `path` (`what` names it in errors), trimmed;
/// at least one.
pub fn lines(path: &Path, what: &str) -> anyhow::Result<Vec<String>> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read the {what} file {}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        bail!(
            "the {what} file {} may be read by others (mode {:o}): chmod 600 it",
            path.display(),
            meta.permissions().mode() & 0o777
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the {what} file {}", path.display()))?;
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_string)
        .collect();
    if lines.is_empty() {
        bail!("the {what} file {} is empty", path.display());
    }
    Ok(lines)
}

/// The first line of the secret file at `path`.
pub fn first_line(path: &Path, what: &str) -> anyhow::Result<String> {
    Ok(lines(path, what)?.swap_remove(0))
}
