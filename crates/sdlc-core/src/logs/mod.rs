//! Whole run logs: everything a run printed on stdout and stderr, line by line, kept with
//! its outcome.
//!
//! - [`LogCapture`] collects a run's lines as the runner reads its pipes, bounded: the first
//!   quarter of `cap` bytes is kept as it came, then the newest lines up to the rest of the
//!   cap, with one note line between saying how much was left out (a run that prints
//!   gigabytes costs at most `cap` of memory and of storage, and the reader still sees how it
//!   began and how it ended).
//! - [`encode`] / [`decode`]: the stored form, one record per attempt of an action, written
//!   in the settle that records the attempt's outcome (so a log is there exactly when its
//!   outcome is) and deleted with the action (`--keep` prunes both). Lines are framed by a
//!   tag byte and a newline; past [`COMPRESS_FROM`] bytes the record is LZ4-compressed.
//! - [`live`]: the capture of each run in flight, shared with `logs --follow` readers.

pub mod live;

use std::collections::VecDeque;

use serde::Serialize;

pub use live::{LiveLog, LiveLogs};

/// Which pipe a line came from, or a line the daemon wrote (a note: lines left out, the run
/// killed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdout,
    Stderr,
    Note,
}

impl Stream {
    fn tag(self) -> u8 {
        match self {
            Stream::Stdout => b'o',
            Stream::Stderr => b'e',
            Stream::Note => b'n',
        }
    }

    fn from_tag(tag: u8) -> Option<Stream> {
        match tag {
            b'o' => Some(Stream::Stdout),
            b'e' => Some(Stream::Stderr),
            b'n' => Some(Stream::Note),
            _ => None,
        }
    }

    /// The stream named `name` (`stdout`, `stderr`), for filters.
    pub fn parse(name: &str) -> Option<Stream> {
        match name {
            "stdout" => Some(Stream::Stdout),
            "stderr" => Some(Stream::Stderr),
            _ => None,
        }
    }
}

/// One line of a log, without its newline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub stream: Stream,
    pub text: Vec<u8>,
}

impl LogLine {
    pub fn note(text: impl Into<String>) -> LogLine {
        LogLine {
            stream: Stream::Note,
            text: text.into().into_bytes(),
        }
    }
}

/// The default bound on one run's log, in bytes (the daemon's `--log-cap`).
pub const DEFAULT_CAP: usize = 1024 * 1024;
/// A line longer than this is cut into pieces of this length (a tool printing megabytes
/// without a newline is still bounded, and followers see it as it comes).
pub const MAX_LINE: usize = 16 * 1024;
/// Stored logs longer than this are compressed.
pub const COMPRESS_FROM: usize = 512;

const CODEC_PLAIN: u8 = 0;
const CODEC_LZ4: u8 = 1;

/// The lines of one run as they arrive, bounded by `cap` bytes (see the module's header).
#[derive(Debug)]
pub struct LogCapture {
    cap: usize,
    head: Vec<LogLine>,
    head_bytes: usize,
    tail: VecDeque<LogLine>,
    tail_bytes: usize,
    /// The sequence number of `tail`'s first line (lines are numbered from 0 as pushed).
    tail_first: u64,
    pushed: u64,
    left_out_lines: u64,
    left_out_bytes: u64,
    /// What came on each pipe after its last newline.
    partial: [Vec<u8>; 2],
}

impl LogCapture {
    pub fn new(cap: usize) -> LogCapture {
        LogCapture {
            cap: cap.max(1024),
            head: Vec::new(),
            head_bytes: 0,
            tail: VecDeque::new(),
            tail_bytes: 0,
            tail_first: 0,
            pushed: 0,
            left_out_lines: 0,
            left_out_bytes: 0,
            partial: [Vec::new(), Vec::new()],
        }
    }

    /// Takes a chunk read from `stream` (stdout or stderr): its complete lines are kept.
    pub fn push(&mut self, stream: Stream, mut chunk: &[u8]) {
        let slot = usize::from(stream == Stream::Stderr);
        while let Some(end) = chunk.iter().position(|&b| b == b'\n') {
            let mut text = std::mem::take(&mut self.partial[slot]);
            text.extend_from_slice(&chunk[..end]);
            chunk = &chunk[end + 1..];
            self.push_line(stream, text);
        }
        self.partial[slot].extend_from_slice(chunk);
        while self.partial[slot].len() >= MAX_LINE {
            let rest = self.partial[slot].split_off(MAX_LINE);
            let text = std::mem::replace(&mut self.partial[slot], rest);
            self.push_line(stream, text);
        }
    }

    /// Adds a line the daemon writes (why the run was stopped, say), after what the run
    /// printed so far.
    pub fn note(&mut self, text: impl Into<String>) {
        self.finish_partials();
        self.push_line(Stream::Note, text.into().into_bytes());
    }

    /// Ends the lines left without a newline.
    pub fn finish_partials(&mut self) {
        for (slot, stream) in [(0, Stream::Stdout), (1, Stream::Stderr)] {
            if !self.partial[slot].is_empty() {
                let text = std::mem::take(&mut self.partial[slot]);
                self.push_line(stream, text);
            }
        }
    }

    fn push_line(&mut self, stream: Stream, text: Vec<u8>) {
        let size = text.len() + 1;
        self.pushed += 1;
        let line = LogLine { stream, text };
        let head_cap = self.cap / 4;
        if self.tail.is_empty() && self.left_out_lines == 0 && self.head_bytes + size <= head_cap {
            self.head_bytes += size;
            self.head.push(line);
            return;
        }
        if self.tail.is_empty() {
            self.tail_first = self.pushed - 1;
        }
        self.tail_bytes += size;
        self.tail.push_back(line);
        let tail_cap = self.cap - head_cap;
        while self.tail_bytes > tail_cap {
            let Some(dropped) = self.tail.pop_front() else {
                break;
            };
            self.tail_bytes -= dropped.text.len() + 1;
            self.tail_first += 1;
            self.left_out_lines += 1;
            self.left_out_bytes += dropped.text.len() as u64 + 1;
        }
    }

    /// Whether nothing was printed.
    pub fn is_empty(&self) -> bool {
        self.pushed == 0 && self.partial.iter().all(Vec::is_empty)
    }

    /// How many lines were taken so far (the next line's sequence number).
    pub fn next_seq(&self) -> u64 {
        self.pushed
    }

    /// The note that stands for the lines left out.
    fn left_out_note(&self) -> Option<LogLine> {
        (self.left_out_lines > 0).then(|| {
            LogLine::note(format!(
                "[sdlc: {} lines ({} bytes) left out here: a run's log keeps its first {} KiB and its last {} KiB (--log-cap)]",
                self.left_out_lines,
                self.left_out_bytes,
                self.cap / 4 / 1024,
                (self.cap - self.cap / 4) / 1024
            ))
        })
    }

    /// Every line kept, in order, with the note for what was left out.
    pub fn lines(&self) -> Vec<LogLine> {
        let mut lines = self.head.clone();
        lines.extend(self.left_out_note());
        lines.extend(self.tail.iter().cloned());
        lines
    }

    /// The lines numbered `from` and later still kept (a note where some were left out),
    /// and the number to ask from next time.
    pub fn lines_since(&self, from: u64) -> (Vec<LogLine>, u64) {
        let mut lines = Vec::new();
        let head_len = self.head.len() as u64;
        let mut next = from;
        if next < head_len {
            lines.extend(self.head[next as usize..].iter().cloned());
            next = head_len;
        }
        let tail_end = self.tail_first + self.tail.len() as u64;
        if !self.tail.is_empty() && next < tail_end {
            if next < self.tail_first {
                let missed = self.tail_first - next;
                lines.push(LogLine::note(format!(
                    "[sdlc: {missed} lines left out here (--log-cap)]"
                )));
                next = self.tail_first;
            }
            let skip = (next - self.tail_first) as usize;
            lines.extend(self.tail.iter().skip(skip).cloned());
            next = tail_end;
        }
        (lines, next.max(from))
    }
}

/// The stored form of `lines` (see the module's header); None when there are none.
pub fn encode(lines: &[LogLine]) -> Option<Vec<u8>> {
    if lines.is_empty() {
        return None;
    }
    let size: usize = lines.iter().map(|line| line.text.len() + 2).sum();
    let mut framed = Vec::with_capacity(size);
    for line in lines {
        framed.push(line.stream.tag());
        // A line holds no newline (the capture splits on them); a note might.
        framed.extend(line.text.iter().map(|&b| if b == b'\n' { b' ' } else { b }));
        framed.push(b'\n');
    }
    if framed.len() < COMPRESS_FROM {
        let mut stored = Vec::with_capacity(framed.len() + 1);
        stored.push(CODEC_PLAIN);
        stored.extend_from_slice(&framed);
        return Some(stored);
    }
    let mut stored = vec![CODEC_LZ4];
    stored.extend_from_slice(&lz4_flex::compress_prepend_size(&framed));
    Some(stored)
}

/// The lines of a stored log, or what is wrong with it.
pub fn decode(stored: &[u8]) -> Result<Vec<LogLine>, String> {
    let (codec, body) = stored
        .split_first()
        .ok_or_else(|| "the stored log is empty".to_string())?;
    let framed = match *codec {
        CODEC_PLAIN => std::borrow::Cow::Borrowed(body),
        CODEC_LZ4 => std::borrow::Cow::Owned(
            lz4_flex::decompress_size_prepended(body)
                .map_err(|err| format!("the stored log does not decompress: {err}"))?,
        ),
        other => return Err(format!("the stored log has an unknown codec {other}")),
    };
    let mut lines = Vec::new();
    for frame in framed.split(|&b| b == b'\n') {
        let Some((tag, text)) = frame.split_first() else {
            continue;
        };
        let stream =
            Stream::from_tag(*tag).ok_or_else(|| format!("the stored log has a bad tag {tag}"))?;
        lines.push(LogLine {
            stream,
            text: text.to_vec(),
        });
    }
    Ok(lines)
}

/// The stored log of one attempt of an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLog {
    pub attempt: u32,
    pub bytes: Vec<u8>,
}

/// Which lines a reader wants.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogFilter {
    /// Only this stream (notes always come).
    pub stream: Option<Stream>,
    /// Only the last this many lines.
    pub tail: Option<usize>,
}

impl LogFilter {
    /// Whether `line` passes the stream filter.
    pub fn admits(&self, line: &LogLine) -> bool {
        line.stream == Stream::Note || self.stream.is_none_or(|s| s == line.stream)
    }

    /// `lines` filtered, the tail applied.
    pub fn apply(&self, lines: Vec<LogLine>) -> Vec<LogLine> {
        let mut kept: Vec<LogLine> = lines.into_iter().filter(|l| self.admits(l)).collect();
        if let Some(tail) = self.tail
            && kept.len() > tail
        {
            kept.drain(..kept.len() - tail);
        }
        kept
    }
}

/// `lines` as text, each ended by a newline.
pub fn to_text(lines: &[LogLine]) -> Vec<u8> {
    let mut text = Vec::with_capacity(lines.iter().map(|l| l.text.len() + 1).sum());
    for line in lines {
        text.extend_from_slice(&line.text);
        text.push(b'\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(lines: &[LogLine]) -> String {
        String::from_utf8(to_text(lines)).unwrap()
    }

    #[test]
    fn lines_are_split_across_chunks_and_pipes_kept_apart() {
        let mut capture = LogCapture::new(DEFAULT_CAP);
        capture.push(Stream::Stdout, b"hel");
        capture.push(Stream::Stderr, b"warn\nhalf");
        capture.push(Stream::Stdout, b"lo\nworld");
        capture.finish_partials();
        let lines = capture.lines();
        assert_eq!(text(&lines), "warn\nhello\nworld\nhalf\n");
        assert_eq!(lines[0].stream, Stream::Stderr);
        assert_eq!(lines[1].stream, Stream::Stdout);
    }

    #[test]
    fn a_long_log_keeps_its_head_and_tail_with_a_note_between() {
        let mut capture = LogCapture::new(4096);
        for i in 0..10_000 {
            capture.push(Stream::Stderr, format!("line {i:05}\n").as_bytes());
        }
        let lines = capture.lines();
        let kept: usize = lines.iter().map(|l| l.text.len() + 1).sum();
        assert!(kept < 4096 + 200, "{kept} bytes kept");
        assert_eq!(lines[0].text, b"line 00000");
        assert_eq!(lines.last().unwrap().text, b"line 09999");
        let note = lines.iter().find(|l| l.stream == Stream::Note).unwrap();
        assert!(String::from_utf8_lossy(&note.text).contains("left out"));
    }

    #[test]
    fn a_line_without_newlines_is_cut_at_the_line_limit() {
        let mut capture = LogCapture::new(DEFAULT_CAP);
        capture.push(Stream::Stdout, &vec![b'x'; MAX_LINE * 2 + 5]);
        capture.finish_partials();
        let lengths: Vec<usize> = capture.lines().iter().map(|l| l.text.len()).collect();
        assert_eq!(lengths, vec![MAX_LINE, MAX_LINE, 5]);
    }

    #[test]
    fn the_stored_form_reads_back_compressed_or_not() {
        for count in [1, 500] {
            let mut capture = LogCapture::new(DEFAULT_CAP);
            for i in 0..count {
                capture.push(Stream::Stdout, format!("out {i}\n").as_bytes());
                capture.push(Stream::Stderr, format!("err {i}\n").as_bytes());
            }
            capture.note("[sdlc: killed]");
            let lines = capture.lines();
            let stored = encode(&lines).unwrap();
            assert_eq!(stored[0], if count == 1 { CODEC_PLAIN } else { CODEC_LZ4 });
            assert_eq!(decode(&stored).unwrap(), lines);
        }
        assert_eq!(encode(&[]), None);
        assert!(decode(&[9, 1, 2]).unwrap_err().contains("unknown codec"));
    }

    #[test]
    fn followers_get_each_line_once_and_a_note_for_what_they_missed() {
        let mut capture = LogCapture::new(4096);
        capture.push(Stream::Stdout, b"a\nb\n");
        let (first, next) = capture.lines_since(0);
        assert_eq!(text(&first), "a\nb\n");
        let (none, same) = capture.lines_since(next);
        assert!(none.is_empty());
        assert_eq!(same, next);
        for i in 0..2000 {
            capture.push(Stream::Stdout, format!("line {i}\n").as_bytes());
        }
        let (later, _) = capture.lines_since(next);
        assert_eq!(later[0].text, b"line 0", "the head still holds it");
        let head = capture.head.len() as u64;
        let (gap, _) = capture.lines_since(head);
        assert_eq!(gap[0].stream, Stream::Note);
        assert_eq!(gap.last().unwrap().text, b"line 1999");
    }

    #[test]
    fn filters_keep_notes_and_cut_the_tail() {
        let lines = vec![
            LogLine {
                stream: Stream::Stdout,
                text: b"o1".to_vec(),
            },
            LogLine {
                stream: Stream::Stderr,
                text: b"e1".to_vec(),
            },
            LogLine::note("n"),
            LogLine {
                stream: Stream::Stderr,
                text: b"e2".to_vec(),
            },
        ];
        let stderr = LogFilter {
            stream: Some(Stream::Stderr),
            tail: Some(2),
        };
        assert_eq!(text(&stderr.apply(lines.clone())), "n\ne2\n");
        assert_eq!(text(&LogFilter::default().apply(lines)), "o1\ne1\nn\ne2\n");
    }
}
