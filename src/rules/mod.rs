//! Rules: TOML files that instantiate a detector with parameters, severity, scope, suppression
//! window, action and their own test cases.
//!
//! Loading validates everything once: unknown fields, unknown detectors, detector parameters,
//! durations, scope patterns and the events of every test case. Errors name the file, line and
//! field. The validated [`RuleSet`] is sorted by id, which fixes the order in which rules see an
//! event and so the order of alerts.

mod builtin;
mod case;
mod exception;

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::patterns::Patterns;
use serde::{Deserialize, Serialize};
use toml::Spanned;

pub use builtin::{builtin_sources, BUILTIN_FILES};
pub use case::{run_cases, CaseOutcome, CaseReport, Expect, TestCase};
pub use exception::{Exception, ExceptionSet};

use crate::config::Config;
use crate::detect::{AnyDetector, DetectorKind};
use crate::diagnostic::FileError;
use crate::state::Observation;
use crate::time::Period;

/// How bad a finding is; numbered as OCSF `severity_id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// OCSF `severity_id`: 1 informational … 5 critical.
    pub fn ocsf_id(self) -> u8 {
        self as u8 + 1
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Informational => "informational",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// OCSF `severity` caption.
    pub fn caption(self) -> &'static str {
        match self {
            Severity::Informational => "Informational",
            Severity::Low => "Low",
            Severity::Medium => "Medium",
            Severity::High => "High",
            Severity::Critical => "Critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a rule asks for when it fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    #[default]
    Alert,
    /// Alert and ask the revocation broker to revoke the credential.
    Revoke,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Spanned<String>,
    title: String,
    description: String,
    detector: Spanned<String>,
    #[serde(default)]
    params: Option<Spanned<toml::Table>>,
    severity: Severity,
    #[serde(default)]
    action: Action,
    #[serde(default = "default_suppress")]
    suppress: Period,
    #[serde(default = "default_enabled")]
    enabled: bool,
    #[serde(default = "empty_scope")]
    scope: RawScope,
    #[serde(default)]
    test_config: Option<Spanned<String>>,
    #[serde(default)]
    tests: Vec<case::RawCase>,
}

fn default_suppress() -> Period {
    Period::from_minutes(60)
}

fn default_enabled() -> bool {
    true
}

fn empty_scope() -> RawScope {
    RawScope {
        credentials: Vec::new(),
        exclude_credentials: Vec::new(),
        principals: Vec::new(),
        exclude_principals: Vec::new(),
        zones: no_zones(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScope {
    #[serde(default)]
    credentials: Vec<String>,
    #[serde(default)]
    exclude_credentials: Vec<String>,
    #[serde(default)]
    principals: Vec<String>,
    #[serde(default)]
    exclude_principals: Vec<String>,
    #[serde(default = "no_zones")]
    zones: Spanned<Vec<String>>,
}

fn no_zones() -> Spanned<Vec<String>> {
    Spanned::new(0..0, Vec::new())
}

/// Which events a rule looks at. Empty lists match everything.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    credentials: Option<Patterns>,
    exclude_credentials: Option<Patterns>,
    principals: Option<Patterns>,
    exclude_principals: Option<Patterns>,
    zones: Vec<String>,
    /// Whether any of the above is set; most rules have no scope and skip the checks.
    scoped: bool,
}

impl Scope {
    /// Whether the scope limits the rule at all (most rules have no scope).
    pub fn is_scoped(&self) -> bool {
        self.scoped
    }

    #[inline]
    pub fn matches(&self, observation: &Observation<'_>, config: &Config) -> bool {
        !self.scoped || self.matches_scoped(observation, config)
    }

    fn matches_scoped(&self, observation: &Observation<'_>, config: &Config) -> bool {
        let event = observation.event;
        let principal = event.principal.as_deref().unwrap_or("");
        self.credentials
            .as_ref()
            .is_none_or(|set| set.is_match(&event.credential))
            && !self
                .exclude_credentials
                .as_ref()
                .is_some_and(|set| set.is_match(&event.credential))
            && self
                .principals
                .as_ref()
                .is_none_or(|set| set.is_match(principal))
            && !self
                .exclude_principals
                .as_ref()
                .is_some_and(|set| set.is_match(principal))
            && (self.zones.is_empty()
                || self
                    .zones
                    .iter()
                    .any(|z| z == config.zones.name(observation.zone)))
    }
}

/// A validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub title: String,
    pub description: String,
    pub kind: DetectorKind,
    pub detector: Arc<AnyDetector>,
    pub severity: Severity,
    pub action: Action,
    pub suppress: Period,
    pub enabled: bool,
    pub scope: Scope,
    /// The file it came from.
    pub file: String,
    pub tests: Vec<TestCase>,
    /// The configuration its test cases run with (else the built-in defaults).
    pub test_config: Option<Arc<Config>>,
}

/// A rule file's name and text.
#[derive(Debug, Clone)]
pub struct RuleSource {
    pub name: String,
    pub text: String,
    /// The directory `test_config` paths are relative to; `None` for built-in rules.
    pub dir: Option<PathBuf>,
}

/// Every error found while loading rules; loading reports them all, not just the first.
#[derive(Debug, Clone)]
pub struct RuleErrors(pub Vec<FileError>);

impl fmt::Display for RuleErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for RuleErrors {}

/// The loaded rules, sorted by id, and the exceptions that apply to them.
#[derive(Debug, Default, Clone)]
pub struct RuleSet {
    rules: Vec<Rule>,
    exceptions: ExceptionSet,
}

impl RuleSet {
    /// The rules shipped with credwatch (the files under rules/, embedded at build time).
    pub fn builtin(config: &Config) -> Result<RuleSet, RuleErrors> {
        RuleSet::from_sources(builtin_sources(), config)
    }

    /// Every `*.toml` file directly in `dir` (sub-directories hold test data and are skipped),
    /// with the exceptions in `dir/exceptions/*.toml` when that directory exists.
    pub fn load_dir(dir: &Path, config: &Config) -> Result<RuleSet, RuleErrors> {
        let fail = |message: String| {
            RuleErrors(vec![FileError::whole_file(
                dir.display().to_string(),
                message,
            )])
        };
        let paths =
            toml_files(dir).map_err(|e| fail(format!("cannot read rules directory: {e}")))?;
        if paths.is_empty() {
            return Err(fail("no rule files (*.toml) in this directory".into()));
        }
        let mut sources = Vec::with_capacity(paths.len());
        let mut errors = Vec::new();
        for path in paths {
            match std::fs::read_to_string(&path) {
                Ok(text) => sources.push(RuleSource {
                    name: path.display().to_string(),
                    text,
                    dir: Some(dir.to_path_buf()),
                }),
                Err(e) => errors.push(FileError::whole_file(
                    path.display().to_string(),
                    format!("cannot read: {e}"),
                )),
            }
        }
        if !errors.is_empty() {
            return Err(RuleErrors(errors));
        }
        let rules = RuleSet::from_sources(sources, config)?;
        rules.with_exceptions_from(&dir.join("exceptions"), config, false)
    }

    /// Adds the exceptions in `dir/*.toml`, validated against these rules and `config`. A
    /// missing directory is an error only when `required`.
    pub fn with_exceptions_from(
        self,
        dir: &Path,
        config: &Config,
        required: bool,
    ) -> Result<RuleSet, RuleErrors> {
        let exceptions =
            ExceptionSet::load_dir(dir, config, &self.ids(), required).map_err(RuleErrors)?;
        Ok(self.with_exceptions(exceptions))
    }

    /// Replaces the exceptions.
    pub fn with_exceptions(mut self, exceptions: ExceptionSet) -> RuleSet {
        self.exceptions = exceptions;
        self
    }

    pub fn exceptions(&self) -> &ExceptionSet {
        &self.exceptions
    }

    /// Every rule id.
    pub fn ids(&self) -> BTreeSet<String> {
        self.rules.iter().map(|rule| rule.id.clone()).collect()
    }

    pub fn from_sources(sources: Vec<RuleSource>, config: &Config) -> Result<RuleSet, RuleErrors> {
        let mut rules = Vec::with_capacity(sources.len());
        let mut errors = Vec::new();
        for source in &sources {
            match parse_rule(source, config) {
                Ok(rule) => rules.push(rule),
                Err(error) => errors.push(error),
            }
        }
        let mut seen = BTreeSet::new();
        for rule in &rules {
            if !seen.insert(rule.id.clone()) {
                errors.push(FileError::whole_file(
                    &rule.file,
                    format!("rule id `{}` is used by another file too", rule.id),
                ));
            }
        }
        if !errors.is_empty() {
            return Err(RuleErrors(errors));
        }
        rules.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(RuleSet {
            rules,
            exceptions: ExceptionSet::default(),
        })
    }

    /// A set holding only `rule` (used to run one rule's test cases alone).
    pub fn single(rule: Rule) -> RuleSet {
        RuleSet {
            rules: vec![rule],
            exceptions: ExceptionSet::default(),
        }
    }

    /// A set of already validated rules, sorted by id.
    pub fn from_rules(mut rules: Vec<Rule>) -> RuleSet {
        rules.sort_by(|a, b| a.id.cmp(&b.id));
        RuleSet {
            rules,
            exceptions: ExceptionSet::default(),
        }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn into_rules(self) -> Vec<Rule> {
        self.rules
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

fn parse_rule(source: &RuleSource, config: &Config) -> Result<Rule, FileError> {
    let name = source.name.as_str();
    let text = source.text.as_str();
    let raw: RawRule = toml::from_str(text).map_err(|e| FileError::from_toml(name, text, &e))?;
    let at =
        |span: std::ops::Range<usize>, message: String| FileError::at(name, text, span, message);

    let id = raw.id.get_ref();
    let id_ok = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    if !id_ok {
        return Err(at(
            raw.id.span(),
            format!("id: `{id}` must be lower-case letters, digits, `-`, `_` or `.`"),
        ));
    }
    let kind: DetectorKind = raw
        .detector
        .get_ref()
        .parse()
        .map_err(|e: String| at(raw.detector.span(), format!("detector: {e}")))?;
    let (params, params_span) = match raw.params {
        Some(params) => {
            let span = params.span();
            (params.into_inner(), span)
        }
        None => (toml::Table::new(), 0..0),
    };
    let detector = kind
        .build(params)
        .map_err(|e| at(params_span, format!("[params] for detector {kind}: {e}")))?;

    let mut scope = Scope {
        credentials: globs(&raw.scope.credentials)
            .map_err(|e| FileError::whole_file(name, format!("[scope] credentials: {e}")))?,
        exclude_credentials: globs(&raw.scope.exclude_credentials).map_err(|e| {
            FileError::whole_file(name, format!("[scope] exclude_credentials: {e}"))
        })?,
        principals: globs(&raw.scope.principals)
            .map_err(|e| FileError::whole_file(name, format!("[scope] principals: {e}")))?,
        exclude_principals: globs(&raw.scope.exclude_principals)
            .map_err(|e| FileError::whole_file(name, format!("[scope] exclude_principals: {e}")))?,
        zones: raw.scope.zones.get_ref().clone(),
        scoped: false,
    };
    scope.scoped = scope.credentials.is_some()
        || scope.exclude_credentials.is_some()
        || scope.principals.is_some()
        || scope.exclude_principals.is_some()
        || !scope.zones.is_empty();

    let test_config = match &raw.test_config {
        None => None,
        Some(path) => Some(Arc::new(load_test_config(source, path.get_ref()).map_err(
            |e| match e {
                TestConfigError::Missing(message) => {
                    at(path.span(), format!("test_config: {message}"))
                }
                TestConfigError::Invalid(error) => error,
            },
        )?)),
    };
    let zone_config = test_config.as_deref().unwrap_or(config);
    for zone in raw.scope.zones.get_ref() {
        if zone_config.zones.id(zone).is_none() {
            return Err(at(
                raw.scope.zones.span(),
                format!(
                    "[scope] zones: unknown zone `{zone}` (defined: {})",
                    zone_config.zones.names().join(", ")
                ),
            ));
        }
    }

    let tests = raw
        .tests
        .into_iter()
        .map(|raw_case| case::TestCase::parse(raw_case, name, text))
        .collect::<Result<Vec<_>, _>>()?;

    Ok(Rule {
        id: id.clone(),
        title: raw.title,
        description: raw.description,
        kind,
        detector: Arc::new(detector),
        severity: raw.severity,
        action: raw.action,
        suppress: raw.suppress,
        enabled: raw.enabled,
        scope,
        file: name.to_owned(),
        tests,
        test_config,
    })
}

/// The `*.toml` files directly in `dir`, sorted (sub-directories are skipped).
pub(crate) fn toml_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() && path.extension().is_some_and(|ext| ext == "toml") {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}

fn globs(patterns: &[String]) -> Result<Option<Patterns>, String> {
    if patterns.is_empty() {
        return Ok(None);
    }
    Patterns::new(patterns).map(Some)
}

enum TestConfigError {
    Missing(String),
    Invalid(FileError),
}

fn load_test_config(source: &RuleSource, path: &str) -> Result<Config, TestConfigError> {
    match &source.dir {
        Some(dir) => {
            let full = dir.join(path);
            let text = std::fs::read_to_string(&full).map_err(|e| {
                TestConfigError::Missing(format!("cannot read {}: {e}", full.display()))
            })?;
            Config::parse(&full.display().to_string(), &text).map_err(TestConfigError::Invalid)
        }
        None => {
            let text = builtin::builtin_file(path)
                .ok_or_else(|| TestConfigError::Missing(format!("no built-in file `{path}`")))?;
            Config::parse(&format!("rules/{path}"), text).map_err(TestConfigError::Invalid)
        }
    }
}
