//! Tools: finding them on disk (this module), running them (`runner`), reading their
//! metadata and checking input against it (`meta`), and turning a run into an action
//! status (`outcome`).
//!
//! A tool lives in `.sdlc/tools/<name>/` as an executable `tool` (any language, by shebang)
//! or a `tool.ts` run by the first TypeScript runtime on PATH (bun, deno, `npx --yes tsx`).
//! Names are validated before any path is built from them, so `../x` never touches a file.

pub mod meta;
pub mod outcome;
pub mod runner;
pub mod try_run;

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub use meta::{ToolMeta, validate_input};
pub use outcome::{command_outcome, log_excerpt, outcome_to_status};
pub use runner::{
    RunLimits, RunRecordAt, RunWatch, ToolMode, ToolRun, run_command_recorded, run_tool,
    run_tool_recorded,
};

use crate::error::ToolError;

/// How to start a tool: an absolute program path and the arguments before `--run`/`--meta`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolScript {
    pub name: String,
    /// Absolute path of the program to execute (the tool itself, or a TypeScript runtime).
    pub program: PathBuf,
    /// Arguments that come before the mode flag (for a runtime: its flags and the script).
    pub args: Vec<OsString>,
    /// The file the user wrote (`tool` or `tool.ts`), for messages.
    pub source: PathBuf,
}

/// The folder that holds every tool of a project.
pub fn tools_dir(root: &Path) -> PathBuf {
    root.join(".sdlc").join("tools")
}

/// Checks a tool name: lowercase letters, digits and hyphens, 1 to 64 characters, not
/// starting with a hyphen (so it can never be read as a flag or a path).
pub fn validate_name(name: &str) -> Result<(), ToolError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(ToolError::InvalidName(name.to_string()))
    }
}

/// Finds how to run tool `name` of the project at `root`.
pub fn tool_script(root: &Path, name: &str) -> Result<ToolScript, ToolError> {
    // The daemon resolves the tool before every run: PATH is read only for a TypeScript tool.
    resolve(root, name, || std::env::var_os("PATH"))
}

/// [`tool_script`] with an explicit PATH to search for TypeScript runtimes.
pub fn tool_script_with_path(
    root: &Path,
    name: &str,
    path_var: Option<OsString>,
) -> Result<ToolScript, ToolError> {
    resolve(root, name, || path_var)
}

/// How to run tool `name`; `path_var` gives PATH, asked only when a TypeScript runtime is
/// looked for.
fn resolve(
    root: &Path,
    name: &str,
    path_var: impl FnOnce() -> Option<OsString>,
) -> Result<ToolScript, ToolError> {
    validate_name(name)?;
    let root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
    let dir = tools_dir(&root).join(name);
    let executable = dir.join("tool");
    // One stat answers both "is it a file" and "is it executable".
    if let Ok(meta) = std::fs::metadata(&executable)
        && meta.is_file()
    {
        if meta.permissions().mode() & 0o111 == 0 {
            return Err(ToolError::NotExecutable {
                name: name.to_string(),
                path: executable,
            });
        }
        return Ok(ToolScript {
            name: name.to_string(),
            program: executable.clone(),
            args: Vec::new(),
            source: executable,
        });
    }
    let typescript = dir.join("tool.ts");
    if typescript.is_file() {
        let (program, mut args) =
            find_typescript_runtime(path_var()).ok_or_else(|| ToolError::NoTypeScriptRuntime {
                name: name.to_string(),
                path: typescript.clone(),
            })?;
        args.push(typescript.clone().into_os_string());
        return Ok(ToolScript {
            name: name.to_string(),
            program,
            args,
            source: typescript,
        });
    }
    Err(ToolError::NotFound {
        name: name.to_string(),
        dir,
        available: list_tools(&root),
    })
}

/// Names of the tools that exist under `.sdlc/tools/`, sorted.
pub fn list_tools(root: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(tools_dir(root)) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| validate_name(name).is_ok())
        .filter(|name| {
            let dir = tools_dir(root).join(name);
            dir.join("tool").is_file() || dir.join("tool.ts").is_file()
        })
        .collect();
    names.sort();
    names
}

/// The first of bun, deno, npx (with tsx) found on `path_var`, as an absolute program and
/// the arguments that precede the script. Absolute paths keep spawning on posix_spawn.
fn find_typescript_runtime(path_var: Option<OsString>) -> Option<(PathBuf, Vec<OsString>)> {
    let candidates: [(&str, &[&str]); 3] = [
        ("bun", &["run"]),
        ("deno", &["run", "--allow-all", "--quiet"]),
        ("npx", &["--yes", "tsx"]),
    ];
    let path_var = path_var?;
    candidates.into_iter().find_map(|(program, args)| {
        let found = find_program(program, Some(&path_var))?;
        Some((found, args.iter().map(OsString::from).collect()))
    })
}

/// The absolute path of the executable `program` names: itself when it holds a slash
/// (relative to the working directory), else the first match on `path_var`. Absolute paths
/// keep spawning on posix_spawn.
pub fn find_program(program: &str, path_var: Option<&OsString>) -> Option<PathBuf> {
    let executable = |candidate: &Path| {
        std::fs::metadata(candidate)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if program.contains('/') {
        let candidate = PathBuf::from(program);
        return executable(&candidate)
            .then(|| std::path::absolute(&candidate).unwrap_or(candidate));
    }
    std::env::split_paths(path_var?)
        .map(|dir| dir.join(program))
        .find(|candidate| executable(candidate))
        .map(|candidate| std::path::absolute(&candidate).unwrap_or(candidate))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_tool(root: &Path, name: &str, file: &str, mode: u32) -> PathBuf {
        let dir = tools_dir(root).join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(file);
        std::fs::write(&path, "#!/bin/sh\necho '{\"ok\":true}'\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn names_are_slugs() {
        for good in ["a", "quality-check", "x1", &"a".repeat(64)] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "../x",
            "A",
            "a/b",
            "-x",
            "a b",
            "é",
            ".",
            "..",
            &"a".repeat(65),
        ] {
            let err = validate_name(bad).unwrap_err();
            assert!(err.to_string().contains("invalid tool name"), "{bad}");
        }
    }

    #[test]
    fn path_traversal_is_rejected_before_touching_files() {
        let root = tempfile::tempdir().unwrap();
        let err = tool_script(root.path(), "../../etc").unwrap_err();
        assert!(matches!(err, ToolError::InvalidName(_)));
    }

    #[test]
    fn finds_an_executable_tool() {
        let root = tempfile::tempdir().unwrap();
        let path = write_tool(root.path(), "hello", "tool", 0o755);
        let script = tool_script(root.path(), "hello").unwrap();
        assert_eq!(script.program, path);
        assert!(script.program.is_absolute());
        assert!(script.args.is_empty());
    }

    #[test]
    fn a_tool_without_the_exec_bit_says_so() {
        let root = tempfile::tempdir().unwrap();
        write_tool(root.path(), "hello", "tool", 0o644);
        let err = tool_script(root.path(), "hello").unwrap_err();
        assert!(err.to_string().contains("chmod +x"), "{err}");
    }

    #[test]
    fn a_missing_tool_lists_the_ones_that_exist() {
        let root = tempfile::tempdir().unwrap();
        write_tool(root.path(), "alpha", "tool", 0o755);
        write_tool(root.path(), "beta", "tool.ts", 0o644);
        let err = tool_script(root.path(), "gamma").unwrap_err().to_string();
        assert!(err.contains("no tool named 'gamma'"), "{err}");
        assert!(err.contains("available tools: alpha, beta"), "{err}");
    }

    #[test]
    fn typescript_tools_use_the_first_runtime_on_path() {
        let root = tempfile::tempdir().unwrap();
        let script = write_tool(root.path(), "ts", "tool.ts", 0o644);
        let bin = tempfile::tempdir().unwrap();
        let err = tool_script_with_path(root.path(), "ts", Some(bin.path().into())).unwrap_err();
        assert!(matches!(err, ToolError::NoTypeScriptRuntime { .. }));

        for runtime in ["npx", "deno"] {
            let path = bin.path().join(runtime);
            std::fs::write(&path, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let found = tool_script_with_path(root.path(), "ts", Some(bin.path().into())).unwrap();
        assert_eq!(
            found.program,
            bin.path().join("deno"),
            "deno comes before npx"
        );
        assert_eq!(found.args.last().unwrap(), script.as_os_str());
    }
}
