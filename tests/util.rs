//! Helpers: run the binary, compare with golden files.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The `credwatch` binary built for these tests.
pub fn credwatch() -> Command {
    Command::new(env!("CARGO_BIN_EXE_credwatch"))
}

pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Runs `command` with `stdin` and returns its output.
pub fn run_with_stdin(mut command: Command, stdin: &[u8]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn credwatch");
    let mut pipe = child.stdin.take().expect("stdin");
    let input = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        // The child may exit before reading everything; a broken pipe is not our failure.
        let _ = pipe.write_all(&input);
    });
    let output = child.wait_with_output().expect("wait for credwatch");
    writer.join().expect("stdin writer");
    output
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts success and returns stdout.
pub fn success(output: &Output) -> String {
    assert!(
        output.status.success(),
        "credwatch failed with {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        stdout(output),
        stderr(output)
    );
    stdout(output)
}

/// Compares `actual` with tests/golden/`name`; with `UPDATE_GOLDEN=1` rewrites the file.
pub fn assert_golden(name: &str, actual: &str) {
    let path = repo("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}); run with UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    if expected == actual {
        return;
    }
    let mut diff = String::new();
    let (old, new): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    for i in 0..old.len().max(new.len()) {
        match (old.get(i), new.get(i)) {
            (Some(a), Some(b)) if a == b => {}
            (a, b) => {
                diff.push_str(&format!(
                    "line {}:\n  - {}\n  + {}\n",
                    i + 1,
                    a.unwrap_or(&"<none>"),
                    b.unwrap_or(&"<none>")
                ));
            }
        }
    }
    panic!(
        "output differs from {} (UPDATE_GOLDEN=1 to accept):\n{diff}",
        path.display()
    );
}

/// Waits (at most a minute) until `text` occurs `times` times in what `read` returns, and
/// fails with it otherwise.
pub fn wait_for_text(read: impl Fn() -> String, text: &str, times: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while read().matches(text).count() < times {
        assert!(
            std::time::Instant::now() < deadline,
            "no {times}x {text:?} within a minute:\n{}",
            read()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
