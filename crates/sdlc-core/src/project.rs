//! Finding the project a command works on, and the paths inside it.
//!
//! The root is `--root` when given, else `SDLC_ROOT`, else the nearest ancestor of the
//! current directory that holds a `.sdlc/` folder.

use std::path::{Path, PathBuf};

/// The `.sdlc` folder of a project.
pub fn sdlc_dir(root: &Path) -> PathBuf {
    root.join(".sdlc")
}

/// Where the database lives unless `--db` says otherwise.
pub fn default_db_path(root: &Path) -> PathBuf {
    sdlc_dir(root).join("orchestrator.db")
}

/// Resolves the project root from an explicit choice or by walking up from `start`.
pub fn find_root(explicit: Option<&Path>, start: &Path) -> Result<PathBuf, String> {
    if let Some(root) = explicit {
        let root = std::path::absolute(root).map_err(|err| format!("{}: {err}", root.display()))?;
        if !root.is_dir() {
            return Err(format!(
                "project root {} is not a directory",
                root.display()
            ));
        }
        return Ok(root);
    }
    let start = std::path::absolute(start).map_err(|err| format!("{}: {err}", start.display()))?;
    start
        .ancestors()
        .find(|dir| sdlc_dir(dir).is_dir())
        .map(Path::to_path_buf)
        .ok_or_else(|| {
            format!(
                "no .sdlc/ folder in {} or any parent: run from inside your project, pass --root DIR, or create .sdlc/ with mkdir -p .sdlc/tools",
                start.display()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_nearest_ancestor_with_sdlc() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".sdlc")).unwrap();
        let deep = dir.path().join("a/b");
        std::fs::create_dir_all(&deep).unwrap();
        assert_eq!(find_root(None, &deep).unwrap(), dir.path());
    }

    #[test]
    fn explicit_root_wins_and_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            find_root(Some(dir.path()), Path::new("/")).unwrap(),
            dir.path()
        );
        let err = find_root(Some(&dir.path().join("nope")), Path::new("/")).unwrap_err();
        assert!(err.contains("not a directory"));
    }

    #[test]
    fn no_project_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let err = find_root(None, dir.path()).unwrap_err();
        assert!(err.contains("--root"), "{err}");
    }
}
