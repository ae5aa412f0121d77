//! Configuration: trust zones, issuer rules, learning period and state bounds.
//!
//! Two stages, as ripgrep does with its flags: [`RawConfig`] is what serde reads from TOML
//! (unknown fields rejected, explicit defaults), and [`Config`] is the validated runtime form
//! with compiled matchers and resolved zone ids. Nothing after start-up sees a raw value. Every
//! error names the file, line and field.

mod api;
mod archive;
mod aws_ip_ranges;
mod kafka;
mod respond;

use std::net::IpAddr;
use std::path::Path;

pub use api::ApiConfig;
pub use archive::ArchiveConfig;
pub use aws_ip_ranges::AwsIpRanges;
pub use kafka::{KafkaConfig, KafkaInput};
pub use respond::{RateLimit, Secret, WebhookConfig};

use globset::{Glob, GlobMatcher};
use ipnet::IpNet;
use serde::{Deserialize, Deserializer};
use toml::Spanned;

use crate::diagnostic::FileError;
use crate::time::Period;
use crate::zones::{ZoneSet, ZoneSpec, ZoneTable};

/// `path` as written in a config file: relative paths are relative to the file (`base`).
pub(crate) fn resolve(base: Option<&Path>, path: &str) -> std::path::PathBuf {
    match base {
        Some(dir) if Path::new(path).is_relative() => dir.join(path),
        _ => std::path::PathBuf::from(path),
    }
}

/// A secret given as `<field>_env` (an environment variable) or `<field>_file` (a file, trailing
/// newline dropped); never inline. `None` when neither is set.
pub(crate) fn read_secret(
    env: &Option<String>,
    file: &Option<String>,
    field: &str,
    base: Option<&Path>,
) -> Result<Option<Secret>, String> {
    match (env, file) {
        (None, None) => Ok(None),
        (Some(name), None) => std::env::var(name)
            .map(|v| Some(Secret::new(v.into_bytes())))
            .map_err(|_| format!("{field}_env: environment variable `{name}` is not set")),
        (None, Some(path)) => {
            let path = resolve(base, path);
            std::fs::read_to_string(&path)
                .map(|text| {
                    Some(Secret::new(
                        text.trim_end_matches(['\n', '\r']).as_bytes().to_vec(),
                    ))
                })
                .map_err(|e| format!("{field}_file: cannot read {}: {e}", path.display()))
        }
        (Some(_), Some(_)) => Err(format!(
            "give one of `{field}_env` or `{field}_file`, not both"
        )),
    }
}

/// The built-in defaults, used when no `--config` is given.
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    learning: RawLearning,
    #[serde(default)]
    state: RawState,
    #[serde(default)]
    zones: Vec<RawZone>,
    #[serde(default)]
    issuers: Vec<RawIssuer>,
    #[serde(default = "no_canaries")]
    canaries: Spanned<Vec<String>>,
    #[serde(default)]
    kafka: Option<Spanned<kafka::RawKafka>>,
    #[serde(default)]
    respond: Option<Spanned<respond::RawRespond>>,
    #[serde(default)]
    api: Option<Spanned<api::RawApi>>,
    #[serde(default)]
    archive: Option<Spanned<archive::RawArchive>>,
    #[serde(default)]
    leaks: Option<Spanned<RawLeaks>>,
}

/// `[leaks]`: how raw secrets in leak reports are matched to credentials.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLeaks {
    /// The HMAC-SHA256 key under which logs carry secrets (Vault: the audit device's HMAC
    /// key), from an environment variable or a file.
    #[serde(default)]
    secret_hmac_key_env: Option<String>,
    #[serde(default)]
    secret_hmac_key_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLearning {
    #[serde(default = "default_min_events")]
    min_events: u32,
    #[serde(default = "default_min_age")]
    min_age: Period,
    #[serde(default = "default_inherit")]
    inherit: bool,
}

impl Default for RawLearning {
    fn default() -> Self {
        RawLearning {
            min_events: default_min_events(),
            min_age: default_min_age(),
            inherit: default_inherit(),
        }
    }
}

fn no_canaries() -> Spanned<Vec<String>> {
    Spanned::new(0..0, Vec::new())
}

fn default_min_events() -> u32 {
    50
}

fn default_inherit() -> bool {
    true
}

fn default_min_age() -> Period {
    Period::from_minutes(24 * 60)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawState {
    #[serde(default = "default_max_networks")]
    max_networks: Spanned<u8>,
    #[serde(default = "default_max_endpoints")]
    max_endpoints: Spanned<u8>,
    #[serde(default = "default_max_user_agents")]
    max_user_agents: Spanned<u8>,
    #[serde(default = "default_rate_alpha")]
    rate_alpha: Spanned<f64>,
    #[serde(default = "default_forget_after")]
    forget_after: Spanned<Period>,
    #[serde(default = "default_max_credentials")]
    max_credentials: Spanned<u64>,
    #[serde(default = "default_max_suppression_windows")]
    max_suppression_windows: Spanned<u64>,
    #[serde(default = "default_max_state_mib")]
    max_state_mib: Spanned<u64>,
}

impl Default for RawState {
    fn default() -> Self {
        RawState {
            max_networks: default_max_networks(),
            max_endpoints: default_max_endpoints(),
            max_user_agents: default_max_user_agents(),
            rate_alpha: default_rate_alpha(),
            forget_after: default_forget_after(),
            max_credentials: default_max_credentials(),
            max_suppression_windows: default_max_suppression_windows(),
            max_state_mib: default_max_state_mib(),
        }
    }
}

fn default_max_state_mib() -> Spanned<u64> {
    Spanned::new(0..0, 8192)
}

fn default_max_credentials() -> Spanned<u64> {
    Spanned::new(0..0, 10_000_000)
}

fn default_max_suppression_windows() -> Spanned<u64> {
    Spanned::new(0..0, 100_000)
}

fn default_max_networks() -> Spanned<u8> {
    Spanned::new(0..0, 4)
}

fn default_max_endpoints() -> Spanned<u8> {
    Spanned::new(0..0, 8)
}

fn default_max_user_agents() -> Spanned<u8> {
    Spanned::new(0..0, 4)
}

/// The longest `[state] forget_after`: 45 days, inside the 65,535 minutes a baseline's entry
/// can tell apart (`state::MAX_ENTRY_AGE_MINUTES`).
pub const MAX_FORGET_AFTER: Period = Period::from_minutes(45 * 24 * 60);

fn default_forget_after() -> Spanned<Period> {
    Spanned::new(0..0, Period::from_minutes(30 * 24 * 60))
}

fn default_rate_alpha() -> Spanned<f64> {
    Spanned::new(0..0, 0.1)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawZone {
    name: Spanned<String>,
    #[serde(default)]
    cidrs: Vec<Cidr>,
    #[serde(default)]
    environments: Vec<String>,
    #[serde(default)]
    aws_ip_ranges: Option<Spanned<AwsIpRanges>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIssuer {
    principal: Spanned<String>,
    zones: Spanned<Vec<String>>,
}

/// A network in CIDR notation; a bare address means the single host.
#[derive(Debug, Clone, Copy)]
struct Cidr(IpNet);

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if let Ok(net) = text.parse::<IpNet>() {
            return Ok(Cidr(net));
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Cidr(IpNet::from(ip)));
        }
        Err(serde::de::Error::custom(format!(
            "invalid network `{text}`: expected CIDR notation such as `10.0.0.0/16` or `2001:db8::/48`"
        )))
    }
}

/// When a credential's baseline is trusted enough for novelty detectors to fire.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Learning {
    pub min_events: u32,
    pub min_age: Period,
    /// A credential issued to an owner (a user, a role, an AppRole) starts from the armed
    /// baseline of that owner's previous credential instead of learning from nothing.
    pub inherit: bool,
}

/// Per-credential memory bounds and baseline smoothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StateBounds {
    pub max_networks: usize,
    pub max_endpoints: usize,
    pub max_user_agents: usize,
    pub rate_alpha: f64,
    /// Networks, endpoints and user agents unseen for longer than this are forgotten: using
    /// them again is novel.
    pub forget_after: Period,
    /// Credentials tracked at most; past it the longest-idle ones are evicted (leaked and
    /// revoked ones last, as they carry the facts that matter most).
    pub max_credentials: usize,
    /// Suppression windows open at most; past it the earliest-ending ones close early.
    pub max_suppression_windows: usize,
    /// Estimated bytes of credential records at most (`max_state_mib`); past it the
    /// longest-idle credentials are evicted as past `max_credentials`.
    pub max_state_bytes: usize,
}

/// Credentials issued by (or, when their issuance was never seen, used by) a principal that
/// matches `pattern` may be used only from `zones`.
#[derive(Debug, Clone)]
pub struct Issuer {
    pub pattern: String,
    matcher: GlobMatcher,
    pub zones: ZoneSet,
}

impl Issuer {
    pub fn matches(&self, principal: &str) -> bool {
        self.matcher.is_match(principal)
    }
}

/// Validated runtime configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from: a path, or `built-in defaults`.
    pub origin: String,
    pub zones: ZoneTable,
    pub issuers: Vec<Issuer>,
    pub learning: Learning,
    pub bounds: StateBounds,
    /// Where `credwatch run` reads and writes; `None` when the file has no `[kafka]`.
    pub kafka: Option<KafkaConfig>,
    /// The revocation broker; `None` when the file has no `[respond.webhook]`.
    pub webhook: Option<WebhookConfig>,
    /// The operations HTTP server of `credwatch run`; `None` when the file has no `[api]`.
    pub api: Option<ApiConfig>,
    /// The Parquet archive of `run` and `replay` (`[archive]`; off unless a directory is given
    /// here or with `--archive`).
    pub archive: ArchiveConfig,
    /// Turns raw secrets in leak reports into the ids logs know them by (`[leaks]`).
    pub secret_hasher: crate::decode::SecretHasher,
    /// Decoy credentials (globs): nobody legitimate ever uses them.
    pub canary_patterns: Vec<String>,
    canaries: Option<crate::patterns::Patterns>,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, FileError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| FileError::whole_file(&name, format!("cannot read config: {e}")))?;
        Config::parse_in(&name, &text, path.parent())
    }

    /// The built-in defaults.
    pub fn builtin() -> Config {
        match Config::parse("built-in defaults", DEFAULT_CONFIG) {
            Ok(config) => config,
            Err(error) => unreachable!("the built-in config is checked by tests: {error}"),
        }
    }

    /// Validates config text; `origin` names it in errors. Relative paths in it (AWS ip-ranges
    /// files) are taken from the working directory.
    pub fn parse(origin: &str, text: &str) -> Result<Config, FileError> {
        Config::parse_in(origin, text, None)
    }

    /// Validates config text whose relative paths are relative to `base`.
    pub fn parse_in(origin: &str, text: &str, base: Option<&Path>) -> Result<Config, FileError> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| FileError::from_toml(origin, text, &e))?;

        let mut specs: Vec<ZoneSpec> = Vec::with_capacity(raw.zones.len());
        for zone in &raw.zones {
            let mut cidrs: Vec<IpNet> = zone.cidrs.iter().map(|c| c.0).collect();
            if let Some(ranges) = &zone.aws_ip_ranges {
                let loaded = ranges.get_ref().load(base).map_err(|e| {
                    FileError::at(
                        origin,
                        text,
                        ranges.span(),
                        format!("[[zones]] aws_ip_ranges: {e}"),
                    )
                })?;
                cidrs.extend(loaded);
            }
            specs.push(ZoneSpec {
                name: zone.name.get_ref().clone(),
                cidrs,
                environments: zone.environments.clone(),
            });
        }
        let zones = ZoneTable::new(&specs).map_err(|error| {
            // Point at the zone the error is about: the last one named in the message.
            let span = raw
                .zones
                .iter()
                .rev()
                .find(|z| {
                    error
                        .to_string()
                        .contains(&format!("`{}`", z.name.get_ref()))
                })
                .map_or(0..0, |z| z.name.span());
            FileError::at(origin, text, span, format!("[[zones]]: {error}"))
        })?;

        let mut issuers = Vec::with_capacity(raw.issuers.len());
        for issuer in &raw.issuers {
            let pattern = issuer.principal.get_ref();
            let matcher = Glob::new(pattern)
                .map_err(|e| {
                    FileError::at(
                        origin,
                        text,
                        issuer.principal.span(),
                        format!("[[issuers]] principal: invalid pattern `{pattern}`: {e}"),
                    )
                })?
                .compile_matcher();
            let mut set = ZoneSet::EMPTY;
            for zone_name in issuer.zones.get_ref() {
                let zone = zones.id(zone_name).ok_or_else(|| {
                    FileError::at(
                        origin,
                        text,
                        issuer.zones.span(),
                        format!(
                            "[[issuers]] zones: unknown zone `{zone_name}` (defined: {})",
                            zones.names().join(", ")
                        ),
                    )
                })?;
                set.insert(zone);
            }
            if set.is_empty() {
                return Err(FileError::at(
                    origin,
                    text,
                    issuer.zones.span(),
                    "[[issuers]] zones: list at least one zone",
                ));
            }
            issuers.push(Issuer {
                pattern: pattern.clone(),
                matcher,
                zones: set,
            });
        }

        let bound = |value: &Spanned<u8>, field: &str| -> Result<usize, FileError> {
            match *value.get_ref() {
                n @ 1..=64 => Ok(n as usize),
                n => Err(FileError::at(
                    origin,
                    text,
                    value.span(),
                    format!("[state] {field}: {n} is out of range 1..=64"),
                )),
            }
        };
        let alpha = *raw.state.rate_alpha.get_ref();
        if !(alpha > 0.0 && alpha <= 1.0) {
            return Err(FileError::at(
                origin,
                text,
                raw.state.rate_alpha.span(),
                format!("[state] rate_alpha: {alpha} is out of range (0, 1]"),
            ));
        }
        let at_least = |value: &Spanned<u64>, field: &str, min: u64| -> Result<usize, FileError> {
            match *value.get_ref() {
                n if n >= min => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
                n => Err(FileError::at(
                    origin,
                    text,
                    value.span(),
                    format!("[state] {field}: {n} is too small (at least {min})"),
                )),
            }
        };
        let max_credentials = at_least(&raw.state.max_credentials, "max_credentials", 100)?;
        let max_suppression_windows = at_least(
            &raw.state.max_suppression_windows,
            "max_suppression_windows",
            100,
        )?;
        let max_state_bytes =
            at_least(&raw.state.max_state_mib, "max_state_mib", 1)?.saturating_mul(1 << 20);
        let forget_after = *raw.state.forget_after.get_ref();
        if forget_after <= Period::ZERO {
            return Err(FileError::at(
                origin,
                text,
                raw.state.forget_after.span(),
                format!("[state] forget_after: {forget_after} must be longer than zero"),
            ));
        }
        if forget_after > MAX_FORGET_AFTER {
            return Err(FileError::at(
                origin,
                text,
                raw.state.forget_after.span(),
                format!(
                    "[state] forget_after: {forget_after} is too long (at most {MAX_FORGET_AFTER}: a baseline keeps each network's, endpoint's and agent's last use as 16-bit minutes)"
                ),
            ));
        }
        let kafka = match raw.kafka {
            None => None,
            Some(section) => {
                let span = section.span();
                Some(
                    section
                        .into_inner()
                        .validate()
                        .map_err(|e| FileError::at(origin, text, span, format!("[kafka] {e}")))?,
                )
            }
        };
        let webhook = match raw.respond {
            None => None,
            Some(section) => {
                let span = section.span();
                Some(
                    section
                        .into_inner()
                        .validate(base)
                        .map_err(|e| FileError::at(origin, text, span, format!("[respond] {e}")))?,
                )
            }
        };
        let api = match raw.api {
            None => None,
            Some(section) => {
                let span = section.span();
                let api = section
                    .into_inner()
                    .validate(base)
                    .map_err(|e| FileError::at(origin, text, span.clone(), format!("[api] {e}")))?;
                if let Some(topic) = &api.leaks_topic {
                    let native_input = kafka.as_ref().is_some_and(|k| {
                        k.inputs
                            .iter()
                            .any(|i| &i.topic == topic && i.format == crate::decode::Format::Native)
                    });
                    if !native_input {
                        return Err(FileError::at(
                            origin,
                            text,
                            span,
                            format!("[api] leaks_topic: `{topic}` must be one of [[kafka.inputs]] with format \"native\""),
                        ));
                    }
                }
                Some(api)
            }
        };
        let archive = match raw.archive {
            None => ArchiveConfig::default(),
            Some(section) => {
                let span = section.span();
                section
                    .into_inner()
                    .validate(base)
                    .map_err(|e| FileError::at(origin, text, span, format!("[archive] {e}")))?
            }
        };
        let secret_hasher = match &raw.leaks {
            None => crate::decode::SecretHasher::default(),
            Some(section) => {
                let leaks = section.get_ref();
                let key = read_secret(
                    &leaks.secret_hmac_key_env,
                    &leaks.secret_hmac_key_file,
                    "secret_hmac_key",
                    base,
                )
                .map_err(|e| FileError::at(origin, text, section.span(), format!("[leaks] {e}")))?;
                if key.as_ref().is_some_and(|k| k.expose().is_empty()) {
                    return Err(FileError::at(
                        origin,
                        text,
                        section.span(),
                        "[leaks] secret_hmac_key: the key is empty",
                    ));
                }
                crate::decode::SecretHasher::new(key)
            }
        };
        let canaries = if raw.canaries.get_ref().is_empty() {
            None
        } else {
            Some(
                crate::patterns::Patterns::new(raw.canaries.get_ref()).map_err(|e| {
                    FileError::at(origin, text, raw.canaries.span(), format!("canaries: {e}"))
                })?,
            )
        };
        Ok(Config {
            origin: origin.to_owned(),
            zones,
            issuers,
            kafka,
            webhook,
            api,
            archive,
            secret_hasher,
            canary_patterns: raw.canaries.get_ref().clone(),
            canaries,
            learning: Learning {
                min_events: raw.learning.min_events,
                min_age: raw.learning.min_age,
                inherit: raw.learning.inherit,
            },
            bounds: StateBounds {
                max_networks: bound(&raw.state.max_networks, "max_networks")?,
                max_endpoints: bound(&raw.state.max_endpoints, "max_endpoints")?,
                max_user_agents: bound(&raw.state.max_user_agents, "max_user_agents")?,
                rate_alpha: alpha,
                forget_after,
                max_credentials,
                max_suppression_windows,
                max_state_bytes,
            },
        })
    }

    /// Whether `credential` is a decoy from the canary registry.
    pub fn is_canary(&self, credential: &str) -> bool {
        self.canaries
            .as_ref()
            .is_some_and(|set| set.is_match(credential))
    }

    /// Zones that the first matching issuer rule grants to `principal`.
    pub fn issuer_zones(&self, principal: &str) -> Option<ZoneSet> {
        self.issuers
            .iter()
            .find(|issuer| issuer.matches(principal))
            .map(|issuer| issuer.zones)
    }

    /// A human summary for `credwatch config check`.
    pub fn describe(&self) -> String {
        use std::fmt::Write;
        let mut text = String::new();
        let _ = writeln!(text, "config: {}", self.origin);
        let _ = writeln!(
            text,
            "zones: {} configured (+ built-in unknown, internet)",
            self.zones.names().len() - 2
        );
        for name in &self.zones.names()[2..] {
            let _ = writeln!(text, "  - {name}");
        }
        let _ = writeln!(text, "issuers: {}", self.issuers.len());
        for issuer in &self.issuers {
            let _ = writeln!(
                text,
                "  - {} -> [{}]",
                issuer.pattern,
                self.zones.names_of(issuer.zones).join(", ")
            );
        }
        let _ = writeln!(
            text,
            "learning: {} events and {} before novelty detectors arm; a new credential {} its lineage's baseline",
            self.learning.min_events,
            self.learning.min_age,
            if self.learning.inherit {
                "inherits"
            } else {
                "does not inherit"
            }
        );
        let _ = writeln!(
            text,
            "leaks: raw secrets matched by SHA-256{}",
            if self.secret_hasher.is_keyed() {
                " and by HMAC-SHA256 under [leaks] secret_hmac_key"
            } else {
                ""
            }
        );
        if let Some(kafka) = &self.kafka {
            let inputs: Vec<String> = kafka
                .inputs
                .iter()
                .map(|i| format!("{} ({})", i.topic, i.format))
                .collect();
            let _ = writeln!(
                text,
                "kafka: {} group {}, inputs [{}], alerts to {}, dead letters to {}",
                kafka.brokers,
                kafka.group_id,
                inputs.join(", "),
                kafka.alerts_topic.as_deref().unwrap_or("(none)"),
                kafka.dead_letter_topic.as_deref().unwrap_or("(none)")
            );
        }
        let _ = writeln!(
            text,
            "state: up to {} networks and {} endpoints per credential, forgotten after {} unseen, rate alpha {}; up to {} credentials in {} MiB of records, and {} open suppression windows",
            self.bounds.max_networks,
            self.bounds.max_endpoints,
            self.bounds.forget_after,
            self.bounds.rate_alpha,
            self.bounds.max_credentials,
            self.bounds.max_state_bytes >> 20,
            self.bounds.max_suppression_windows
        );
        if let Some(dir) = &self.archive.dir {
            let _ = writeln!(
                text,
                "archive: {} (files of up to {} rows, published every {}s)",
                dir.display(),
                self.archive.roll_rows,
                self.archive.roll_age.as_secs()
            );
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zones::parse_ip;

    #[test]
    fn builtin_defaults_are_valid() {
        let config = Config::builtin();
        let zone = config.zones.classify(parse_ip("10.1.2.3"), None);
        assert_eq!(config.zones.name(zone), "private");
        assert_eq!(config.learning.min_events, 50);
    }

    #[test]
    fn an_empty_file_gets_every_default() {
        let config = Config::parse("empty.toml", "").unwrap();
        assert_eq!(config.bounds.max_networks, 4);
        assert_eq!(config.bounds.max_endpoints, 8);
        assert_eq!(config.learning.min_age, Period::from_minutes(1440));
    }

    #[test]
    fn issuers_match_globs_and_resolve_zones() {
        let text = r#"
[[zones]]
name = "aws"
cidrs = ["52.94.0.0/16"]

[[issuers]]
principal = "*.amazonaws.com"
zones = ["aws"]
"#;
        let config = Config::parse("c.toml", text).unwrap();
        let zones = config.issuer_zones("ec2.amazonaws.com").unwrap();
        assert_eq!(config.zones.names_of(zones), vec!["aws"]);
        assert!(config.issuer_zones("alice").is_none());
    }

    #[test]
    fn unknown_fields_name_file_line_and_field() {
        let text = "[learning]\nmin_events = 5\nmin_agee = \"1h\"\n";
        let error = Config::parse("c.toml", text).unwrap_err().to_string();
        assert!(error.starts_with("c.toml:3:"), "{error}");
        assert!(error.contains("min_agee"), "{error}");
    }

    #[test]
    fn bad_cidrs_and_durations_are_placed() {
        let error = Config::parse(
            "c.toml",
            "[[zones]]\nname = \"a\"\ncidrs = [\"10.0.0/8\"]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(error.starts_with("c.toml:3:"), "{error}");
        assert!(error.contains("10.0.0/8"), "{error}");
        let error = Config::parse("c.toml", "[learning]\nmin_age = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("c.toml:2:"), "{error}");
        assert!(error.contains("invalid duration"), "{error}");
    }

    #[test]
    fn issuer_with_unknown_zone_is_an_error_on_its_line() {
        let text =
            "[[zones]]\nname = \"prod\"\n\n[[issuers]]\nprincipal = \"svc\"\nzones = [\"prd\"]\n";
        let error = Config::parse("c.toml", text).unwrap_err().to_string();
        assert!(error.starts_with("c.toml:6:"), "{error}");
        assert!(error.contains("unknown zone `prd`"), "{error}");
    }

    #[test]
    fn zones_load_from_aws_ip_ranges() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
        let text = "[[zones]]\nname = \"aws\"\naws_ip_ranges = { file = \"ip-ranges.json\", services = [\"EC2\"], regions = [\"eu-west-1\"] }\n";
        let config = Config::parse_in("c.toml", text, Some(&dir)).unwrap();
        let zone = |ip: &str| {
            config
                .zones
                .name(config.zones.classify(parse_ip(ip), None))
                .to_owned()
        };
        assert_eq!(zone("52.95.1.9"), "aws");
        assert_eq!(zone("2a05:d018:1::1"), "aws");
        assert_eq!(zone("3.5.140.9"), "internet", "another region");
        let missing = "[[zones]]\nname = \"aws\"\naws_ip_ranges = { file = \"nope.json\" }\n";
        let error = Config::parse_in("c.toml", missing, Some(&dir))
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("c.toml:3:"), "{error}");
        assert!(error.contains("nope.json"), "{error}");
    }

    #[test]
    fn kafka_sections_are_validated() {
        let text = "[kafka]\nbrokers = \"127.0.0.1:9092\"\nalerts_topic = \"alerts\"\n[[kafka.inputs]]\ntopic = \"trail\"\nformat = \"cloudtrail\"\n[kafka.properties]\n\"socket.timeout.ms\" = \"5000\"\n";
        let kafka = Config::parse("c.toml", text).unwrap().kafka.unwrap();
        assert_eq!(kafka.group_id, "credwatch");
        assert_eq!(kafka.inputs[0].format, crate::decode::Format::Cloudtrail);
        assert_eq!(kafka.properties["socket.timeout.ms"], "5000");
        let managed = text.replace("socket.timeout.ms", "enable.auto.commit");
        let error = Config::parse("c.toml", &managed).unwrap_err().to_string();
        assert!(error.contains("enable.auto.commit"), "{error}");
        let no_inputs = "[kafka]\nbrokers = \"b:1\"\n";
        let error = Config::parse("c.toml", no_inputs).unwrap_err().to_string();
        assert!(
            error.starts_with("c.toml:1:") && error.contains("inputs"),
            "{error}"
        );
    }

    #[test]
    fn duplicate_zones_and_bad_bounds_are_errors() {
        let text = "[[zones]]\nname = \"a\"\n[[zones]]\nname = \"a\"\n";
        let error = Config::parse("c.toml", text).unwrap_err().to_string();
        assert!(error.starts_with("c.toml:4:"), "{error}");
        assert!(error.contains("defined twice"), "{error}");
        let error = Config::parse("c.toml", "[state]\nmax_networks = 0\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("max_networks"), "{error}");
        let error = Config::parse("c.toml", "[state]\nrate_alpha = 1.5\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("rate_alpha"), "{error}");
        for (bound, min) in [
            ("max_credentials = 99", "at least 100"),
            ("max_state_mib = 0", "at least 1"),
        ] {
            let error = Config::parse("c.toml", &format!("[state]\n{bound}\n"))
                .unwrap_err()
                .to_string();
            assert!(error.starts_with("c.toml:2:"), "{error}");
            assert!(error.contains(min), "{error}");
        }
        let error = Config::parse("c.toml", "[state]\nforget_after = \"46d\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("c.toml:2:"), "{error}");
        assert!(error.contains("at most 45d"), "{error}");
        let longest = Config::parse("c.toml", "[state]\nforget_after = \"45d\"\n").expect("config");
        assert_eq!(longest.bounds.forget_after, MAX_FORGET_AFTER);
        let bounds = Config::parse("c.toml", "[state]\nmax_state_mib = 3\n")
            .expect("config")
            .bounds;
        assert_eq!(bounds.max_state_bytes, 3 << 20);
        assert_eq!(
            Config::parse("c.toml", "")
                .expect("config")
                .bounds
                .max_state_bytes,
            8 << 30,
            "8 GiB by default"
        );
    }
}
