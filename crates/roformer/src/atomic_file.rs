//! Writing a file so that it appears complete or not at all.
//!
//! [`AtomicFile::create`] opens a hidden temporary sibling of the target
//! (`.<name>.partial-<pid>-<n>`, in the same directory, so the final rename stays on one file
//! system); the caller writes through [`AtomicFile::writer`]; [`AtomicFile::commit`] flushes and
//! fsyncs it, renames it over the target (replacing an existing file) and, best effort, fsyncs
//! the directory. Dropping an `AtomicFile` without committing it, or a failed commit, removes the
//! temporary file, so on any error nothing is left behind and an existing target is untouched.
//!
//! A process killed while writing (SIGKILL, a crash, a power cut) cannot remove its temporary
//! file; the next commit of the same target removes such leftovers of processes that no longer
//! run.
//!
//! [`write_atomically`] does the three steps around a closure.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Size of the write buffer.
const BUFFER: usize = 1 << 20;

/// A file being written under a temporary name; see the [module documentation](self).
#[derive(Debug)]
pub struct AtomicFile {
    target: PathBuf,
    dir: PathBuf,
    temp: PathBuf,
    /// `None` only once closed (in `commit` or `drop`).
    writer: Option<BufWriter<File>>,
    committed: bool,
}

impl AtomicFile {
    /// Creates the temporary file for `path`. Errors (no file name, a missing or unwritable
    /// directory) name the temporary file.
    pub fn create(path: &Path) -> io::Result<Self> {
        let name = path.file_name().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "the output path has no file name",
            )
        })?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let mut temp_name = OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(
            ".partial-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let temp = dir.join(temp_name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(|e| {
                with_context(
                    e,
                    format_args!("cannot create the temporary file {}", temp.display()),
                )
            })?;
        Ok(Self {
            target: path.to_path_buf(),
            dir: dir.to_path_buf(),
            temp,
            writer: Some(BufWriter::with_capacity(BUFFER, file)),
            committed: false,
        })
    }

    /// The path the data ends up at.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// The temporary file being written.
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// The buffered writer into the temporary file (it also seeks, for formats that patch
    /// their header at the end).
    pub fn writer(&mut self) -> &mut BufWriter<File> {
        self.writer
            .as_mut()
            .expect("the writer is only taken by commit and drop")
    }

    /// Flushes and fsyncs the data, then renames the temporary file over the target. On error
    /// the temporary file is removed and the target is untouched.
    pub fn commit(mut self) -> io::Result<()> {
        let mut writer = self
            .writer
            .take()
            .expect("the writer is only taken by commit and drop");
        let temp = self.temp.display();
        writer
            .flush()
            .map_err(|e| with_context(e, format_args!("cannot write {temp}")))?;
        let file = writer.get_ref();
        file.sync_all()
            .map_err(|e| with_context(e, format_args!("cannot sync {temp}")))?;
        // Closed before the rename (which some platforms refuse for open files).
        drop(writer);
        std::fs::rename(&self.temp, &self.target).map_err(|e| {
            with_context(
                e,
                format_args!("cannot rename {temp} to {}", self.target.display()),
            )
        })?;
        self.committed = true;
        // Persist the rename itself; not possible on every platform, so best effort.
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        if let Some(name) = self.target.file_name() {
            remove_abandoned(&self.dir, name);
        }
        Ok(())
    }
}

/// Removes the temporary files for `dir/name` of processes that have ended without committing
/// them. Best effort: what cannot be listed or removed stays.
fn remove_abandoned(dir: &Path, name: &std::ffi::OsStr) {
    let mut prefix = OsString::from(".");
    prefix.push(name);
    prefix.push(".partial-");
    let Some(prefix) = prefix.to_str() else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let pid = file_name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok());
        if let Some(pid) = pid {
            if pid != std::process::id() && !process_runs(pid) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Whether process `pid` exists. Only Linux can tell cheaply (`/proc`); elsewhere every process
/// is taken to run, so nothing is removed.
fn process_runs(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        // Close the file first: some platforms cannot remove an open file.
        drop(self.writer.take());
        if !self.committed {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Writes `path` atomically: `write` fills the temporary file, which is then committed. When
/// `write` fails, the temporary file is removed, the target is untouched and its error is
/// returned.
pub fn write_atomically<E: From<io::Error>>(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> Result<(), E>,
) -> Result<(), E> {
    let mut file = AtomicFile::create(path)?;
    write(file.writer())?;
    file.commit()?;
    Ok(())
}

/// `error` with `what` in front of its message, keeping its kind.
fn with_context(error: io::Error, what: std::fmt::Arguments<'_>) -> io::Error {
    io::Error::new(error.kind(), format!("{what}: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh empty directory, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "roformer-atomic-file-test-{}-{name}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        /// The names in the directory, sorted.
        fn names(&self) -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(&self.0)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn success_creates_or_replaces_the_target() {
        let dir = Scratch::new("success");
        let path = dir.0.join("out.bin");
        write_atomically(&path, |w| w.write_all(b"first")).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        write_atomically(&path, |w| w.write_all(b"second")).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert_eq!(dir.names(), ["out.bin"]);
    }

    #[test]
    fn a_commit_removes_the_leftovers_of_ended_processes_only() {
        let dir = Scratch::new("leftovers");
        let path = dir.0.join("out.bin");
        // Above Linux's largest pid (2^22): no such process.
        let dead = ".out.bin.partial-4999999-0";
        let ours = format!(".out.bin.partial-{}-999", std::process::id());
        let other_target = ".other.bin.partial-4999999-0";
        for name in [dead, ours.as_str(), other_target] {
            std::fs::write(dir.0.join(name), b"partial").unwrap();
        }
        write_atomically(&path, |w| w.write_all(b"data")).unwrap();
        let mut expected = vec![ours, other_target.to_string(), "out.bin".to_string()];
        if !cfg!(target_os = "linux") {
            expected.push(dead.to_string());
        }
        expected.sort();
        assert_eq!(dir.names(), expected);
    }

    #[test]
    fn the_temporary_file_is_a_hidden_sibling() {
        let dir = Scratch::new("sibling");
        let path = dir.0.join("out.bin");
        let mut file = AtomicFile::create(&path).unwrap();
        assert_eq!(file.target(), path);
        let temp = file.temp_path().to_path_buf();
        assert_eq!(temp.parent(), Some(dir.0.as_path()));
        let name = temp.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(".out.bin.partial-"), "{name}");
        file.writer().write_all(b"data").unwrap();
        assert!(temp.exists() && !path.exists());
        file.commit().unwrap();
        assert!(!temp.exists());
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
    }

    #[test]
    fn an_error_while_writing_leaves_no_file_and_keeps_the_target() {
        let dir = Scratch::new("write-error");
        let path = dir.0.join("out.bin");
        std::fs::write(&path, b"old").unwrap();
        let err = write_atomically(&path, |w| {
            w.write_all(&[7; 3 << 20])?;
            Err(io::Error::other("the writer gave up"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "the writer gave up");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(dir.names(), ["out.bin"]);
        // Dropping an uncommitted file is the same.
        let mut file = AtomicFile::create(&path).unwrap();
        file.writer().write_all(b"new").unwrap();
        drop(file);
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(dir.names(), ["out.bin"]);
    }

    #[test]
    fn a_failed_rename_leaves_no_file() {
        let dir = Scratch::new("rename-error");
        // The target is a non-empty directory: everything but the rename succeeds.
        let path = dir.0.join("adir");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("keep"), b"x").unwrap();
        let err = write_atomically(&path, |w| w.write_all(b"data")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("cannot rename") && msg.contains(&path.display().to_string()),
            "{msg}"
        );
        assert_eq!(dir.names(), ["adir"]);
        assert_eq!(std::fs::read(path.join("keep")).unwrap(), b"x");
    }

    #[test]
    fn a_missing_directory_or_file_name_is_an_error() {
        let dir = Scratch::new("missing");
        let path = dir.0.join("no/such/dir/out.bin");
        let mut called = false;
        let err = write_atomically(&path, |_| {
            called = true;
            Ok::<(), io::Error>(())
        })
        .unwrap_err();
        assert!(
            !called,
            "nothing is written when the file cannot be created"
        );
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        let msg = err.to_string();
        assert!(
            msg.contains("cannot create the temporary file") && msg.contains("out.bin"),
            "{msg}"
        );
        assert!(dir.names().is_empty());

        let err = AtomicFile::create(Path::new("/")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(err.to_string(), "the output path has no file name");
    }
}
