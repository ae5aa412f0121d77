//! The durable outbox: a decided revocation is on disk, synced, before the first attempt, and
//! leaves only when the broker confirmed it.
//!
//! One file per revocation, named by its idempotency key, written to a temporary name, synced,
//! renamed into place and the directory synced: a crash leaves either no file or a whole one.
//! On start every file left is delivered again; the idempotency key lets the broker drop a
//! repeat. Refused revocations (a 4xx) move to `refused/` for an operator.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A directory of pending revocations.
#[derive(Debug, Clone)]
pub struct Outbox {
    dir: PathBuf,
}

impl Outbox {
    pub fn open(dir: &Path) -> io::Result<Outbox> {
        fs::create_dir_all(dir.join("refused"))?;
        Ok(Outbox {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    /// Stores a request durably; returns false when one with this key is already pending.
    pub fn put(&self, key: &str, body: &[u8]) -> io::Result<bool> {
        let path = self.path(key);
        if path.exists() {
            return Ok(false);
        }
        let temporary = self.dir.join(format!(".{key}.tmp"));
        let mut file = File::create(&temporary)?;
        file.write_all(body)?;
        file.sync_all()?;
        fs::rename(&temporary, &path)?;
        File::open(&self.dir)?.sync_all()?;
        Ok(true)
    }

    /// Removes a delivered request.
    pub fn remove(&self, key: &str) -> io::Result<()> {
        match fs::remove_file(self.path(key)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => File::open(&self.dir)?.sync_all(),
        }
    }

    /// Moves a request the broker refused aside, with the reason.
    pub fn refuse(&self, key: &str, reason: &str) -> io::Result<()> {
        let refused = self.dir.join("refused");
        fs::write(refused.join(format!("{key}.reason")), reason)?;
        fs::rename(self.path(key), refused.join(format!("{key}.json")))?;
        File::open(&self.dir)?.sync_all()
    }

    /// Every pending request as (key, body), oldest file name first.
    pub fn pending(&self) -> io::Result<Vec<(String, Vec<u8>)>> {
        let mut pending = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if let Some(key) = name.strip_suffix(".json").filter(|_| path.is_file()) {
                pending.push((key.to_owned(), fs::read(&path)?));
            }
        }
        pending.sort();
        Ok(pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_is_idempotent_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        assert!(outbox.put("k1", b"one").unwrap());
        assert!(!outbox.put("k1", b"again").unwrap());
        assert!(outbox.put("k2", b"two").unwrap());
        let reopened = Outbox::open(dir.path()).unwrap();
        assert_eq!(
            reopened.pending().unwrap(),
            vec![
                ("k1".to_owned(), b"one".to_vec()),
                ("k2".to_owned(), b"two".to_vec())
            ]
        );
        reopened.remove("k1").unwrap();
        reopened.refuse("k2", "400 Bad Request").unwrap();
        assert!(reopened.pending().unwrap().is_empty());
        assert!(dir.path().join("refused/k2.json").exists());
    }
}
