//! The event export: each run's events, as they are committed, appended to
//! `.sdlc/runs/<run_id>.jsonl` (one JSON object a line, one write per event) and published to
//! whoever follows the run (`plan run`, `plan events --follow`, the API's `?follow=1`).
//!
//! The database is the truth; this only copies what it holds, in sequence order, so a file
//! deleted or cut short is carried on from where it stands. One exporter per database (the
//! engine's), so lines are never interleaved.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use tokio::sync::broadcast;
use uuid::Uuid;

use super::RunEvent;

/// How many events a follower may fall behind before it misses some (and reads them back
/// from the database instead).
const FOLLOW_BUFFER: usize = 1024;

/// Appends runs' new events to their files and publishes them.
pub struct EventExport {
    dir: Option<PathBuf>,
    /// The next sequence number each open run's file expects.
    next: HashMap<Uuid, u64>,
    sender: broadcast::Sender<RunEvent>,
}

impl EventExport {
    /// Exports to `dir` (no files when None; followers are told either way).
    pub fn new(dir: Option<PathBuf>) -> EventExport {
        let (sender, _) = broadcast::channel(FOLLOW_BUFFER);
        EventExport {
            dir,
            next: HashMap::new(),
            sender,
        }
    }

    /// The sender followers subscribe to.
    pub fn sender(&self) -> broadcast::Sender<RunEvent> {
        self.sender.clone()
    }

    /// The sequence number after which run `run`'s events are still to be exported.
    pub fn exported_up_to(&mut self, run: Uuid) -> Option<u64> {
        let next = match self.next.get(&run) {
            Some(next) => *next,
            None => {
                let next = self
                    .dir
                    .as_ref()
                    .map_or(0, |dir| next_in_file(&file_of(dir, run)));
                self.next.insert(run, next);
                next
            }
        };
        next.checked_sub(1)
    }

    /// Writes and publishes `events` (of one run, in order, following what was exported).
    pub fn export(&mut self, run: Uuid, events: &[RunEvent]) {
        let Some(last) = events.last() else {
            return;
        };
        if let Some(dir) = &self.dir
            && let Err(err) = append(dir, run, events)
        {
            tracing::warn!(%run, "could not write the run's event log: {err}");
        }
        for event in events {
            let _ = self.sender.send(event.clone());
        }
        if last.event == "run_completed" {
            // A retry starts the file again from what it holds.
            self.next.remove(&run);
        } else {
            self.next.insert(run, last.seq + 1);
        }
    }
}

/// The event log file of run `run` in `dir`.
pub fn file_of(dir: &Path, run: Uuid) -> PathBuf {
    dir.join(format!("{run}.jsonl"))
}

fn append(dir: &Path, run: Uuid, events: &[RunEvent]) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::create_dir_all(dir)?;
    // Events carry steps' results and variables: for the owner only, like the database.
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(file_of(dir, run))?;
    if file.metadata()?.permissions().mode() & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    for event in events {
        let mut line = serde_json::to_vec(event).expect("an event always serializes");
        line.push(b'\n');
        // One write per event: each line reaches the file (and a reader) whole, as it happens.
        file.write_all(&line)?;
    }
    Ok(())
}

/// The sequence number after the last whole line of a run's file (0 when missing). Reads
/// the file's end only (a run of thousands of steps has a file of megabytes), the whole file
/// only when no whole event is in that end.
pub fn next_in_file(path: &Path) -> u64 {
    use std::io::{Read, Seek, SeekFrom};
    let last_event = |text: &[u8]| {
        String::from_utf8_lossy(text)
            .lines()
            .rev()
            .find_map(|line| serde_json::from_str::<RunEvent>(line).ok())
            .map(|event| event.seq + 1)
    };
    let Ok(mut file) = std::fs::File::open(path) else {
        return 0;
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let mut tail = Vec::new();
    if file
        .seek(SeekFrom::Start(len.saturating_sub(TAIL_READ)))
        .is_ok()
        && file.read_to_end(&mut tail).is_ok()
        && let Some(next) = last_event(&tail)
    {
        return next;
    }
    std::fs::read(path)
        .ok()
        .and_then(|text| last_event(&text))
        .unwrap_or(0)
}

/// How much of the end of an event file is read to find its last event: an event's line is
/// usually far shorter, and when one is not, the whole file is read.
const TAIL_READ: u64 = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    fn event(run: Uuid, seq: u64, padding: usize) -> RunEvent {
        let mut detail = serde_json::Map::new();
        detail.insert("reason".into(), "x".repeat(padding).into());
        RunEvent {
            seq,
            event: "step_failed".into(),
            ts: chrono::Utc::now(),
            run_id: run,
            step_id: Some("s".into()),
            detail,
        }
    }

    #[test]
    fn the_next_sequence_number_is_read_from_the_files_end_whatever_its_lines_length() {
        let dir = tempfile::tempdir().unwrap();
        let run = Uuid::new_v4();
        assert_eq!(next_in_file(&file_of(dir.path(), run)), 0, "no file yet");
        // Long lines first, a short one last: found in the tail.
        append(
            dir.path(),
            run,
            &[event(run, 0, 200_000), event(run, 1, 10)],
        )
        .unwrap();
        assert_eq!(next_in_file(&file_of(dir.path(), run)), 2);
        // A last line longer than the tail read: found by reading the whole file.
        append(dir.path(), run, &[event(run, 2, 100_000)]).unwrap();
        assert_eq!(next_in_file(&file_of(dir.path(), run)), 3);
        // A line cut short by a crash does not count.
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(file_of(dir.path(), run))
            .unwrap();
        file.write_all(br#"{"seq":3,"event":"step_sta"#).unwrap();
        assert_eq!(next_in_file(&file_of(dir.path(), run)), 3);
    }
}
