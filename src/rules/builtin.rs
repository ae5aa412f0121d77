//! The default rule set, embedded so `credwatch` works without a rules directory.
//!
//! Lists every file under rules/ (a test checks the list against the directory).

use super::RuleSource;

/// `(path relative to rules/, contents)` for every shipped rule and test-data file.
pub const BUILTIN_FILES: &[(&str, &str)] = &[
    ("canary.toml", include_str!("../../rules/canary.toml")),
    (
        "concurrent-zones.toml",
        include_str!("../../rules/concurrent-zones.toml"),
    ),
    (
        "dormant-reuse.toml",
        include_str!("../../rules/dormant-reuse.toml"),
    ),
    (
        "leak-lookback.toml",
        include_str!("../../rules/leak-lookback.toml"),
    ),
    (
        "new-endpoint.toml",
        include_str!("../../rules/new-endpoint.toml"),
    ),
    (
        "new-network.toml",
        include_str!("../../rules/new-network.toml"),
    ),
    (
        "new-user-agent.toml",
        include_str!("../../rules/new-user-agent.toml"),
    ),
    (
        "rate-spike.toml",
        include_str!("../../rules/rate-spike.toml"),
    ),
    (
        "unknown-credential.toml",
        include_str!("../../rules/unknown-credential.toml"),
    ),
    (
        "use-after-expiry.toml",
        include_str!("../../rules/use-after-expiry.toml"),
    ),
    (
        "use-after-leak.toml",
        include_str!("../../rules/use-after-leak.toml"),
    ),
    (
        "use-after-revoke.toml",
        include_str!("../../rules/use-after-revoke.toml"),
    ),
    (
        "zone-violation.toml",
        include_str!("../../rules/zone-violation.toml"),
    ),
    (
        "testdata/zones.toml",
        include_str!("../../rules/testdata/zones.toml"),
    ),
];

/// The shipped rule files (test data excluded).
pub fn builtin_sources() -> Vec<RuleSource> {
    BUILTIN_FILES
        .iter()
        .filter(|(path, _)| !path.contains('/'))
        .map(|(path, text)| RuleSource {
            name: format!("rules/{path}"),
            text: (*text).to_owned(),
            dir: None,
        })
        .collect()
}

pub(super) fn builtin_file(path: &str) -> Option<&'static str> {
    BUILTIN_FILES
        .iter()
        .find(|(name, _)| *name == path)
        .map(|(_, text)| *text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_list_matches_the_rules_directory() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
        let mut on_disk = Vec::new();
        for sub in ["", "testdata"] {
            for entry in std::fs::read_dir(dir.join(sub)).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "toml") {
                    let name = path.file_name().unwrap().to_string_lossy().into_owned();
                    on_disk.push(if sub.is_empty() {
                        name
                    } else {
                        format!("{sub}/{name}")
                    });
                }
            }
        }
        on_disk.sort();
        let mut embedded: Vec<String> = BUILTIN_FILES.iter().map(|(p, _)| p.to_string()).collect();
        embedded.sort();
        assert_eq!(embedded, on_disk, "add new rule files to BUILTIN_FILES");
    }
}
