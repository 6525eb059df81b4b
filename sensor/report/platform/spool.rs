//! The on-disk queue between the scorer and the platform.
//!
//! Format: a directory of segment files, `<first seq>.seg` with the first
//! sequence number as 20 zero-padded digits, each holding events as JSON
//! lines (one `Event` object per line, `\n`-terminated). Sequence numbers
//! are implicit: line `i` of a segment is event `first + i`, and a segment
//! starts where the previous one ended. `cursor.json` holds
//! `{"spool_id": "<hex>", "acked": N}`: every event below `N` has been
//! acknowledged by the platform (or dropped), every event from `N` on has
//! not.
//!
//! Guarantees:
//! - An event is written (one `write(2)` of the whole line) before
//!   `submit` returns, so a process crash loses nothing submitted. The
//!   segment is fsynced by the delivery task every `sync_interval_ms`, on
//!   rotation and at shutdown, so a power loss loses at most that interval.
//! - Delivery is in sequence order and resumes at the cursor after a
//!   restart: acknowledged events are never sent again; events sent but
//!   not acknowledged before a crash are sent again (the receiver dedups
//!   by event key). The cursor is replaced atomically (write, fsync,
//!   rename) after every acknowledgement.
//! - A line torn by a crash at the end of the newest segment is cut off
//!   at open; any line that does not parse as JSON is skipped. Both are
//!   counted in `osprey_platform_spool_skipped_lines_total`.
//! - Size is bounded: past `spool_max_bytes` the oldest segments are
//!   deleted, acknowledged or not; the unacknowledged events in them are
//!   counted in `osprey_platform_spool_dropped_events_total` and logged.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};
use tokio::sync::futures::Notified;
use tokio::sync::Notify;
use tracing::{info, warn};

use super::metrics::PlatformMetrics;
use super::PlatformError;

const CURSOR: &str = "cursor.json";
const CURSOR_TMP: &str = "cursor.json.tmp";
const SUFFIX: &str = ".seg";
/// Held (flock) by the one process writing the spool.
const LOCK: &str = "lock";

#[derive(Serialize, Deserialize)]
struct Cursor {
    spool_id: String,
    acked: u64,
}

#[derive(Clone, Copy, Debug)]
struct Segment {
    first: u64,
    count: u64,
    bytes: u64,
}

impl Segment {
    fn end(&self) -> u64 {
        self.first + self.count
    }
}

struct State {
    /// Oldest first; the last one is the active segment.
    segments: VecDeque<Segment>,
    active: Option<File>,
    next_seq: u64,
    acked: u64,
    bytes: u64,
    /// Active segment written since its last fsync.
    dirty: bool,
    /// Rotated-out segments (and the directory) still to be fsynced.
    unsynced: Vec<File>,
    write_failing: bool,
}

/// Events read for one delivery: sequence numbers `first..end`, of which
/// `lines` are the readable ones in order, `seqs` their sequence numbers.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) first: u64,
    pub(crate) end: u64,
    pub(crate) lines: Vec<String>,
    pub(crate) seqs: Vec<u64>,
    /// A part of a batch split after a rejection (not what was read).
    pub(crate) part: bool,
}

impl Batch {
    /// Two batches of half the lines each, covering `first..end` between
    /// them: acknowledging the first moves the cursor to the second's
    /// first line, so the second is never skipped, and the first is never
    /// sent again. A batch of fewer than two lines comes back unsplit.
    pub(crate) fn split(mut self) -> Result<(Batch, Batch), Batch> {
        if self.lines.len() < 2 {
            return Err(self);
        }
        let mid = self.lines.len() / 2;
        let at = self.seqs[mid];
        let right = Batch {
            first: at,
            end: self.end,
            lines: self.lines.split_off(mid),
            seqs: self.seqs.split_off(mid),
            part: true,
        };
        let left = Batch {
            first: self.first,
            end: at,
            lines: self.lines,
            seqs: self.seqs,
            part: true,
        };
        Ok((left, right))
    }
}

/// Where the previous read stopped, so the next one seeks instead of
/// rescanning the segment.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReadPos {
    seg: u64,
    seq: u64,
    offset: u64,
}

pub(crate) struct Spool {
    /// Holds the directory's lock (see [`Spool::open`]) while the spool
    /// lives.
    _lock: File,
    dir: PathBuf,
    segment_bytes: u64,
    max_bytes: u64,
    spool_id: String,
    state: Mutex<State>,
    notify: Notify,
    metrics: PlatformMetrics,
}

fn io_err<'a>(
    path: &'a Path,
    action: &'static str,
) -> impl FnOnce(io::Error) -> PlatformError + 'a {
    move |source| PlatformError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

impl Spool {
    pub(crate) fn open(
        dir: &Path,
        segment_bytes: u64,
        max_bytes: u64,
        metrics: PlatformMetrics,
    ) -> Result<Spool, PlatformError> {
        fs::create_dir_all(dir).map_err(io_err(dir, "create spool directory"))?;
        // One writer per directory: two sensors appending to the same
        // segments and cursor would interleave lines and skip each other's
        // events. The lock goes with the process (flock), so a crash
        // leaves nothing to clean up.
        let lock_path = dir.join(LOCK);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path, "open"))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(io_err(&lock_path, "lock")(io::Error::other(
                    "another osprey process is using this spool directory",
                )))
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_err(&lock_path, "lock")(e)),
        }
        let cursor_path = dir.join(CURSOR);
        let cursor = match fs::read(&cursor_path) {
            Ok(bytes) => match serde_json::from_slice::<Cursor>(&bytes) {
                Ok(c) => Some(c),
                Err(e) => {
                    warn!(path = %cursor_path.display(), error = %e,
                        "platform spool cursor unreadable; resending every spooled event");
                    None
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&cursor_path, "read")(e)),
        };
        let fresh = cursor.is_none();
        let (spool_id, mut acked) = match cursor {
            Some(c) => (c.spool_id, c.acked),
            None => (format!("{:016x}", rand::random::<u64>()), 0),
        };

        let mut firsts = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err(dir, "list"))? {
            let entry = entry.map_err(io_err(dir, "list"))?;
            let name = entry.file_name();
            let Some(first) = name
                .to_str()
                .and_then(|n| n.strip_suffix(SUFFIX))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            firsts.push(first);
        }
        firsts.sort_unstable();

        let mut segments = VecDeque::with_capacity(firsts.len());
        let mut skipped = 0;
        for (i, &first) in firsts.iter().enumerate() {
            let path = segment_path(dir, first);
            let (count, bytes) = match firsts.get(i + 1) {
                Some(&next) => {
                    let meta = fs::metadata(&path).map_err(io_err(&path, "stat"))?;
                    (next - first, meta.len())
                }
                None => {
                    let (count, bytes, torn) = recover_tail(&path)?;
                    if torn {
                        skipped += 1;
                        warn!(path = %path.display(),
                            "platform spool: cut off a line torn by a crash");
                    }
                    (count, bytes)
                }
            };
            segments.push_back(Segment {
                first,
                count,
                bytes,
            });
        }
        if let Some(front) = segments.front() {
            acked = acked.max(front.first);
        }
        let next_seq = segments.back().map_or(0, Segment::end).max(acked);
        while segments.len() > 1 && segments.front().is_some_and(|s| s.end() <= acked) {
            if let Some(s) = segments.pop_front() {
                remove_segment(dir, s.first);
            }
        }
        // A cursor ahead of the data (lines lost with a power loss before
        // the ack's fsync reached them, on a file system that reorders)
        // must not number new events below it: they start a segment of
        // their own at the cursor.
        let active = match segments.back() {
            Some(s) if s.end() >= acked => {
                let path = segment_path(dir, s.first);
                Some(open_append(&path).map_err(io_err(&path, "open"))?)
            }
            Some(s) => {
                warn!(dir = %dir.display(), cursor = acked, data_end = s.end(),
                    "platform spool: the cursor is ahead of the data; new events start after it");
                None
            }
            None => None,
        };
        let bytes = segments.iter().map(|s| s.bytes).sum();
        metrics.spool_skipped.inc_by(skipped);
        metrics.dropped.add(
            crate::metrics::Stage::Report,
            "spool_unreadable_line",
            skipped,
        );
        let spool = Spool {
            _lock: lock,
            dir: dir.to_path_buf(),
            segment_bytes,
            max_bytes,
            spool_id,
            state: Mutex::new(State {
                segments,
                active,
                next_seq,
                acked,
                bytes,
                dirty: false,
                unsynced: Vec::new(),
                write_failing: false,
            }),
            notify: Notify::new(),
            metrics,
        };
        if fresh {
            spool
                .write_cursor(acked)
                .map_err(io_err(&cursor_path, "write"))?;
        }
        let st = spool.lock();
        spool.publish(&st);
        if st.next_seq > st.acked {
            info!(events = st.next_seq - st.acked, dir = %dir.display(),
                "platform spool holds undelivered events");
        }
        drop(st);
        Ok(spool)
    }

    pub(crate) fn spool_id(&self) -> &str {
        &self.spool_id
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, st: &State) {
        self.metrics
            .spool_bytes
            .set(i64::try_from(st.bytes).unwrap_or(i64::MAX));
        self.metrics
            .spool_events
            .set(i64::try_from(st.next_seq - st.acked).unwrap_or(i64::MAX));
    }

    /// Resolves when an event was appended since the last wake-up.
    pub(crate) fn notified(&self) -> Notified<'_> {
        self.notify.notified()
    }

    /// (unacknowledged events, bytes on disk).
    pub(crate) fn stats(&self) -> (u64, u64) {
        let st = self.lock();
        (st.next_seq - st.acked, st.bytes)
    }

    /// Appends one line (`\n`-terminated JSON). Failures are logged once
    /// per outage and counted as dropped: the caller is the scorer, which
    /// has nothing better to do with them.
    pub(crate) fn append(&self, line: &[u8]) {
        let mut st = self.lock();
        match self.append_locked(&mut st, line) {
            Ok(()) => {
                if st.write_failing {
                    st.write_failing = false;
                    info!(dir = %self.dir.display(), "platform spool writable again");
                }
            }
            Err(e) => {
                self.metrics.spool_dropped.inc();
                self.metrics
                    .dropped
                    .add(crate::metrics::Stage::Report, "spool_write_failed", 1);
                if !st.write_failing {
                    st.write_failing = true;
                    warn!(dir = %self.dir.display(), error = %e,
                        "platform spool write failed; events are dropped until it works again");
                }
            }
        }
        self.enforce_cap(&mut st);
        self.publish(&st);
        drop(st);
        self.notify.notify_one();
    }

    fn append_locked(&self, st: &mut State, line: &[u8]) -> io::Result<()> {
        let len = line.len() as u64;
        let rotate = match (st.segments.back(), &st.active) {
            (Some(s), Some(_)) => s.count > 0 && s.bytes + len > self.segment_bytes,
            _ => true,
        };
        if rotate {
            let first = st.next_seq;
            let file = open_append(&segment_path(&self.dir, first))?;
            if let Some(old) = st.active.take() {
                st.unsynced.push(old);
            }
            if let Ok(d) = File::open(&self.dir) {
                st.unsynced.push(d);
            }
            if st.segments.back().is_none_or(|s| s.first != first) {
                st.segments.push_back(Segment {
                    first,
                    count: 0,
                    bytes: 0,
                });
            }
            st.active = Some(file);
        }
        let (Some(seg), Some(file)) = (st.segments.back_mut(), st.active.as_mut()) else {
            return Err(io::Error::other("no active spool segment"));
        };
        if let Err(e) = file.write_all(line) {
            // Never leave a partial line for the next one to run into: cut
            // it, or start a fresh segment if even that fails.
            if file.set_len(seg.bytes).is_err() {
                st.active = None;
            }
            return Err(e);
        }
        seg.count += 1;
        seg.bytes += len;
        st.bytes += len;
        st.next_seq += 1;
        st.dirty = true;
        Ok(())
    }

    fn enforce_cap(&self, st: &mut State) {
        while st.bytes > self.max_bytes && st.segments.len() > 1 {
            let Some(s) = st.segments.pop_front() else {
                break;
            };
            let lost = s.end().saturating_sub(st.acked.max(s.first));
            st.acked = st.acked.max(s.end());
            st.bytes -= s.bytes;
            remove_segment(&self.dir, s.first);
            if lost > 0 {
                self.metrics.spool_dropped.inc_by(lost);
                self.metrics
                    .dropped
                    .add(crate::metrics::Stage::Report, "spool_full", lost);
                warn!(dropped = lost, max_bytes = self.max_bytes, dir = %self.dir.display(),
                    "platform spool full: dropped its oldest undelivered events");
            }
        }
    }

    /// Events not yet acknowledged.
    pub(crate) fn pending(&self) -> u64 {
        let st = self.lock();
        st.next_seq - st.acked
    }

    /// Reads up to `max` events from the cursor on.
    pub(crate) fn read_batch(&self, max: usize, pos: &mut Option<ReadPos>) -> io::Result<Batch> {
        let (start, segs): (u64, Vec<Segment>) = {
            let st = self.lock();
            let segs = st
                .segments
                .iter()
                .filter(|s| s.end() > st.acked)
                .copied()
                .collect();
            (st.acked, segs)
        };
        let mut lines = Vec::new();
        let mut seqs = Vec::new();
        let mut seq = start;
        let mut skipped = 0;
        for s in segs {
            if lines.len() >= max {
                break;
            }
            seq = seq.max(s.first);
            let path = segment_path(&self.dir, s.first);
            let file = match File::open(&path) {
                Ok(f) => f,
                // Dropped by the size cap since the snapshot.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    seq = s.end();
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut r = BufReader::new(file);
            let mut offset = 0;
            let mut buf = Vec::new();
            match *pos {
                Some(p) if p.seg == s.first && p.seq == seq => {
                    r.seek(SeekFrom::Start(p.offset))?;
                    offset = p.offset;
                }
                _ => {
                    for _ in s.first..seq {
                        buf.clear();
                        let n = r.read_until(b'\n', &mut buf)?;
                        if n == 0 {
                            break;
                        }
                        offset += n as u64;
                    }
                }
            }
            while seq < s.end() && lines.len() < max {
                buf.clear();
                let n = r.read_until(b'\n', &mut buf)?;
                if n == 0 {
                    // Shorter than its successor's name says: lines lost
                    // to a power failure before they were synced.
                    seq = s.end();
                    break;
                }
                offset += n as u64;
                seq += 1;
                match std::str::from_utf8(&buf) {
                    Ok(text)
                        if text.ends_with('\n')
                            && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() =>
                    {
                        lines.push(text.trim_end().to_owned());
                        seqs.push(seq - 1);
                    }
                    _ => skipped += 1,
                }
            }
            *pos = Some(ReadPos {
                seg: s.first,
                seq,
                offset,
            });
        }
        if skipped > 0 {
            self.metrics.spool_skipped.inc_by(skipped);
            self.metrics.dropped.add(
                crate::metrics::Stage::Report,
                "spool_unreadable_line",
                skipped,
            );
            warn!(
                skipped,
                dir = %self.dir.display(),
                "platform spool: skipped unreadable lines"
            );
        }
        Ok(Batch {
            first: start,
            end: seq,
            lines,
            seqs,
            part: false,
        })
    }

    /// Records that every event below `end` was acknowledged: moves the
    /// cursor and deletes the segments it passed.
    pub(crate) fn ack(&self, end: u64) -> io::Result<()> {
        let acked = {
            let mut st = self.lock();
            if end <= st.acked {
                return Ok(());
            }
            st.acked = end.min(st.next_seq);
            while st.segments.len() > 1 && st.segments.front().is_some_and(|s| s.end() <= st.acked)
            {
                if let Some(s) = st.segments.pop_front() {
                    st.bytes -= s.bytes;
                    remove_segment(&self.dir, s.first);
                }
            }
            self.publish(&st);
            st.acked
        };
        // The data the cursor passes is on disk before the cursor is:
        // a cursor ahead of the data would, after a power loss, number the
        // next events below it and hide them.
        self.sync();
        self.write_cursor(acked)
    }

    fn write_cursor(&self, acked: u64) -> io::Result<()> {
        let tmp = self.dir.join(CURSOR_TMP);
        let mut text = serde_json::to_vec(&Cursor {
            spool_id: self.spool_id.clone(),
            acked,
        })
        .map_err(io::Error::other)?;
        text.push(b'\n');
        let mut f = File::create(&tmp)?;
        f.write_all(&text)?;
        f.sync_data()?;
        fs::rename(&tmp, self.dir.join(CURSOR))
    }

    /// Fsyncs what was written since the last call.
    pub(crate) fn sync(&self) {
        let (files, active) = {
            let mut st = self.lock();
            let files = std::mem::take(&mut st.unsynced);
            let active = if st.dirty {
                st.dirty = false;
                st.active.as_ref().and_then(|f| f.try_clone().ok())
            } else {
                None
            };
            (files, active)
        };
        for f in files.iter().chain(active.as_ref()) {
            if let Err(e) = f.sync_all() {
                warn!(dir = %self.dir.display(), error = %e, "platform spool fsync failed");
            }
        }
    }
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}{SUFFIX}"))
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn remove_segment(dir: &Path, first: u64) {
    let path = segment_path(dir, first);
    match fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => warn!(path = %path.display(), error = %e,
            "platform spool: cannot delete a segment"),
    }
}

/// Counts the complete lines of the newest segment and cuts off a torn
/// last one: (lines, bytes kept, whether a tail was cut).
fn recover_tail(path: &Path) -> Result<(u64, u64, bool), PlatformError> {
    let data = fs::read(path).map_err(io_err(path, "read"))?;
    let count = data.iter().filter(|&&b| b == b'\n').count() as u64;
    let keep = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let torn = keep < data.len();
    if torn {
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io_err(path, "open"))?;
        f.set_len(keep as u64).map_err(io_err(path, "truncate"))?;
        f.sync_all().map_err(io_err(path, "fsync"))?;
    }
    Ok((count, keep as u64, torn))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_until_the_first_is_gone() {
        let d = tempfile::tempdir().unwrap();
        let first = spool(d.path(), 64, 1 << 20);
        let m = PlatformMetrics::new(&prometheus::Registry::new());
        let Err(e) = Spool::open(d.path(), 64, 1 << 20, m) else {
            panic!("a second spool on the same directory was opened");
        };
        assert!(e.to_string().contains("another osprey process"), "{e}");
        drop(first);
        let _again = spool(d.path(), 64, 1 << 20);
    }

    fn spool(dir: &Path, seg: u64, max: u64) -> Spool {
        let m = PlatformMetrics::new(&prometheus::Registry::new());
        Spool::open(dir, seg, max, m).unwrap()
    }

    #[test]
    fn events_after_a_cursor_ahead_of_the_data_are_neither_hidden_nor_skipped() {
        let d = tempfile::tempdir().unwrap();
        let s = spool(d.path(), 1 << 20, 1 << 20);
        for i in 0..10 {
            s.append(&line(i));
        }
        s.ack(10).unwrap();
        drop(s);
        // A power loss kept the cursor (10) but only 5 of the lines.
        let seg = segment_path(d.path(), 0);
        let text = fs::read_to_string(&seg).unwrap();
        let kept: String = text.lines().take(5).map(|l| format!("{l}\n")).collect();
        fs::write(&seg, kept).unwrap();
        let s = spool(d.path(), 1 << 20, 1 << 20);
        for i in 10..13 {
            s.append(&line(i));
        }
        let mut pos = None;
        let b = s.read_batch(10, &mut pos).unwrap();
        assert_eq!((b.first, b.end), (10, 13));
        assert_eq!(
            b.lines,
            [
                "{\"key\":\"k10\"}",
                "{\"key\":\"k11\"}",
                "{\"key\":\"k12\"}"
            ]
        );
    }

    fn line(i: u64) -> Vec<u8> {
        format!("{{\"key\":\"k{i}\"}}\n").into_bytes()
    }

    #[test]
    fn resumes_at_the_cursor_and_cuts_a_torn_tail() {
        let d = tempfile::tempdir().unwrap();
        let s = spool(d.path(), 64, 1 << 20);
        for i in 0..10 {
            s.append(&line(i));
        }
        let mut pos = None;
        let b = s.read_batch(4, &mut pos).unwrap();
        assert_eq!((b.first, b.end, b.lines.len()), (0, 4, 4));
        s.ack(b.end).unwrap();
        let b = s.read_batch(3, &mut pos).unwrap();
        assert_eq!(b.lines[0], "{\"key\":\"k4\"}");
        drop(s);
        // A crash in the middle of a line.
        let last = fs::read_dir(d.path())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "seg"))
            .max()
            .unwrap();
        OpenOptions::new()
            .append(true)
            .open(&last)
            .unwrap()
            .write_all(b"{\"key\":\"to")
            .unwrap();
        let s = spool(d.path(), 64, 1 << 20);
        assert_eq!(s.metrics.spool_skipped.get(), 1);
        assert_eq!(s.pending(), 6);
        s.append(&line(10));
        let b = s.read_batch(100, &mut None).unwrap();
        let keys: Vec<_> = b.lines.iter().map(|l| &l[8..l.len() - 2]).collect();
        assert_eq!(keys, ["k4", "k5", "k6", "k7", "k8", "k9", "k10"]);
    }

    #[test]
    fn a_split_batch_covers_every_sequence_number_once() {
        let d = tempfile::tempdir().unwrap();
        let s = spool(d.path(), 1 << 20, 1 << 20);
        for i in 0..3 {
            s.append(&line(i));
        }
        s.append(b"torn\n");
        for i in 4..7 {
            s.append(&line(i));
        }
        let b = s.read_batch(100, &mut None).unwrap();
        assert_eq!(b.seqs, [0, 1, 2, 4, 5, 6]);
        let (l, r) = b.split().unwrap();
        assert_eq!((l.first, l.end, l.seqs.as_slice()), (0, 4, &[0, 1, 2][..]));
        assert_eq!((r.first, r.end, r.seqs.as_slice()), (4, 7, &[4, 5, 6][..]));
        let (rl, rr) = r.split().unwrap();
        assert_eq!((rl.first, rl.end, rl.lines.len()), (4, 5, 1));
        assert_eq!((rr.first, rr.end, rr.lines.len()), (5, 7, 2));
        assert!(rl.split().is_err());
    }

    #[test]
    fn over_the_cap_the_oldest_segments_go() {
        let d = tempfile::tempdir().unwrap();
        let s = spool(d.path(), 40, 100);
        for i in 0..20 {
            s.append(&line(i));
        }
        let (events, bytes) = s.stats();
        assert!(bytes <= 100, "{bytes}");
        assert_eq!(s.metrics.spool_dropped.get(), 20 - events);
        let b = s.read_batch(100, &mut None).unwrap();
        assert_eq!(b.end, 20);
        assert_eq!(b.lines.len() as u64, events);
        assert_eq!(b.lines.last().unwrap(), "{\"key\":\"k19\"}");
    }
}
