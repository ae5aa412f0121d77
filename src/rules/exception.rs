//! Exceptions: reviewed, expiring permissions for known-noisy behaviour (a CI bot applying
//! Terraform, a vendor's scanner), kept as data in `rules/exceptions/*.toml`.
//!
//! An exception names who owns it, why it exists and when it expires, and scopes itself by any
//! of rule, credential, principal, zone, network and user agent (every list given must match;
//! patterns are globs). A finding that an active exception matches becomes no alert; the
//! engine counts it against the exception. Expiry is judged in event time like everything in
//! the detection core, so a replay of last month applies last month's exceptions; once event
//! time passes `expires`, the exception stops applying and the engine reports it as expired.
//!
//! ```toml
//! [[exceptions]]
//! id = "terraform-ci-bot"
//! owner = "platform-team"
//! reason = "Terraform applies touch many APIs from the CI network (PLAT-1234)"
//! expires = "2026-12-31T00:00:00Z"
//! rules = ["new-endpoint"]
//! credentials = ["AKIACIBOT*"]
//! zones = ["ci"]
//! user_agents = ["Terraform/*"]
//! ```

use std::collections::BTreeSet;
use std::path::Path;

use crate::patterns::Patterns;
use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use crate::config::Config;
use crate::diagnostic::FileError;
use crate::state::Observation;
use crate::time::Timestamp;
use crate::zones::ZoneSet;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    exceptions: Vec<Spanned<RawException>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawException {
    id: Spanned<String>,
    owner: Spanned<String>,
    reason: Spanned<String>,
    expires: Spanned<String>,
    #[serde(default = "none")]
    rules: Spanned<Vec<String>>,
    #[serde(default = "none")]
    credentials: Spanned<Vec<String>>,
    #[serde(default = "none")]
    principals: Spanned<Vec<String>>,
    #[serde(default = "none")]
    zones: Spanned<Vec<String>>,
    #[serde(default = "none")]
    networks: Spanned<Vec<String>>,
    #[serde(default = "none")]
    user_agents: Spanned<Vec<String>>,
}

fn none() -> Spanned<Vec<String>> {
    Spanned::new(0..0, Vec::new())
}

/// One validated exception.
#[derive(Debug, Clone)]
pub struct Exception {
    pub id: String,
    pub owner: String,
    pub reason: String,
    pub expires: Timestamp,
    /// The file it came from.
    pub file: String,
    /// Rule ids it applies to; empty means every rule.
    pub rules: Vec<String>,
    credentials: Option<Patterns>,
    principals: Option<Patterns>,
    zones: Option<ZoneSet>,
    networks: Vec<IpNet>,
    user_agents: Option<Patterns>,
    /// The scope as written, for reports (`credentials=AKIACIBOT*; zones=ci`).
    pub scope: String,
}

impl Exception {
    /// Whether this exception covers a finding of `rule` on `observation` at its event time.
    pub fn covers(&self, rule: &str, observation: &Observation<'_>) -> bool {
        let event = observation.event;
        if event.ts >= self.expires {
            return false;
        }
        (self.rules.is_empty() || self.rules.iter().any(|r| r == rule))
            && self
                .credentials
                .as_ref()
                .is_none_or(|set| set.is_match(&event.credential))
            && self.principals.as_ref().is_none_or(|set| {
                event
                    .principal
                    .as_deref()
                    .is_some_and(|principal| set.is_match(principal))
            })
            && self
                .zones
                .is_none_or(|zones| zones.contains(observation.zone))
            && (self.networks.is_empty()
                || observation
                    .ip
                    .is_some_and(|ip| self.networks.iter().any(|net| net.contains(&ip))))
            && self.user_agents.as_ref().is_none_or(|set| {
                event
                    .user_agent
                    .as_deref()
                    .is_some_and(|agent| set.is_match(agent))
            })
    }

    /// Expired as of `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        now >= self.expires
    }
}

/// Every exception in force, sorted by id (the first covering one is credited).
#[derive(Debug, Clone, Default)]
pub struct ExceptionSet {
    exceptions: Vec<Exception>,
}

impl ExceptionSet {
    /// Every `*.toml` file directly in `dir`. A missing directory is an empty set only when
    /// `required` is false (the implicit `exceptions/` beside `--rules`).
    pub fn load_dir(
        dir: &Path,
        config: &Config,
        rule_ids: &BTreeSet<String>,
        required: bool,
    ) -> Result<ExceptionSet, Vec<FileError>> {
        let fail =
            |message: String| vec![FileError::whole_file(dir.display().to_string(), message)];
        let paths = match super::toml_files(dir) {
            Ok(paths) => paths,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok(ExceptionSet::default())
            }
            Err(e) => return Err(fail(format!("cannot read exceptions directory: {e}"))),
        };
        if paths.is_empty() && required {
            return Err(fail("no exception files (*.toml) in this directory".into()));
        }
        let mut sources = Vec::with_capacity(paths.len());
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                vec![FileError::whole_file(
                    path.display().to_string(),
                    format!("cannot read: {e}"),
                )]
            })?;
            sources.push((path.display().to_string(), text));
        }
        ExceptionSet::parse(&sources, config, rule_ids)
    }

    /// Validates exception files given as (name, text).
    pub fn parse(
        sources: &[(String, String)],
        config: &Config,
        rule_ids: &BTreeSet<String>,
    ) -> Result<ExceptionSet, Vec<FileError>> {
        let mut exceptions = Vec::new();
        let mut errors = Vec::new();
        for (name, text) in sources {
            let raw: RawFile = match toml::from_str(text) {
                Ok(raw) => raw,
                Err(e) => {
                    errors.push(FileError::from_toml(name, text, &e));
                    continue;
                }
            };
            if raw.exceptions.is_empty() {
                errors.push(FileError::whole_file(
                    name,
                    "no [[exceptions]] in this file",
                ));
            }
            for raw in raw.exceptions {
                match validate(raw.into_inner(), name, text, config, rule_ids) {
                    Ok(exception) => exceptions.push(exception),
                    Err(error) => errors.push(error),
                }
            }
        }
        exceptions.sort_by(|a, b| a.id.cmp(&b.id));
        for pair in exceptions.windows(2) {
            if pair[0].id == pair[1].id {
                errors.push(FileError::whole_file(
                    &pair[1].file,
                    format!(
                        "exception id `{}` is used twice (also in {})",
                        pair[1].id, pair[0].file
                    ),
                ));
            }
        }
        if errors.is_empty() {
            Ok(ExceptionSet { exceptions })
        } else {
            Err(errors)
        }
    }

    /// The first exception (by id) that covers a finding of `rule` on `observation`.
    pub fn covering(&self, rule: &str, observation: &Observation<'_>) -> Option<usize> {
        if self.exceptions.is_empty() {
            return None;
        }
        self.exceptions
            .iter()
            .position(|exception| exception.covers(rule, observation))
    }

    pub fn all(&self) -> &[Exception] {
        &self.exceptions
    }

    pub fn len(&self) -> usize {
        self.exceptions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.exceptions.is_empty()
    }
}

fn validate(
    raw: RawException,
    name: &str,
    text: &str,
    config: &Config,
    rule_ids: &BTreeSet<String>,
) -> Result<Exception, FileError> {
    let at =
        |span: std::ops::Range<usize>, message: String| FileError::at(name, text, span, message);
    let id = raw.id.get_ref();
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
    {
        return Err(at(
            raw.id.span(),
            format!("id: `{id}` must be lower-case letters, digits, `-`, `_` or `.`"),
        ));
    }
    for (field, value) in [("owner", &raw.owner), ("reason", &raw.reason)] {
        if value.get_ref().trim().is_empty() {
            return Err(at(
                value.span(),
                format!("{field}: say who answers for this exception and why it exists"),
            ));
        }
    }
    let expires = Timestamp::parse_rfc3339(raw.expires.get_ref()).map_err(|e| {
        at(
            raw.expires.span(),
            format!("expires: {e} (an RFC 3339 time such as \"2026-12-31T00:00:00Z\")"),
        )
    })?;
    for rule in raw.rules.get_ref() {
        if !rule_ids.contains(rule) {
            return Err(at(
                raw.rules.span(),
                format!(
                    "rules: unknown rule `{rule}` (loaded: {})",
                    rule_ids.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    let globs = |list: &Spanned<Vec<String>>, field: &str| -> Result<Option<Patterns>, FileError> {
        if list.get_ref().is_empty() {
            return Ok(None);
        }
        Patterns::new(list.get_ref())
            .map(Some)
            .map_err(|e| at(list.span(), format!("{field}: {e}")))
    };
    let zones = if raw.zones.get_ref().is_empty() {
        None
    } else {
        let mut set = ZoneSet::EMPTY;
        for zone in raw.zones.get_ref() {
            let id = config.zones.id(zone).ok_or_else(|| {
                at(
                    raw.zones.span(),
                    format!(
                        "zones: unknown zone `{zone}` (defined: {})",
                        config.zones.names().join(", ")
                    ),
                )
            })?;
            set.insert(id);
        }
        Some(set)
    };
    let mut networks = Vec::with_capacity(raw.networks.get_ref().len());
    for network in raw.networks.get_ref() {
        let net = network
            .parse::<IpNet>()
            .or_else(|_| network.parse::<std::net::IpAddr>().map(IpNet::from))
            .map_err(|_| {
                at(
                    raw.networks.span(),
                    format!("networks: invalid network `{network}`: expected CIDR notation such as `10.0.0.0/16`"),
                )
            })?;
        networks.push(net);
    }
    let mut scope = Vec::new();
    for (field, list) in [
        ("rules", &raw.rules),
        ("credentials", &raw.credentials),
        ("principals", &raw.principals),
        ("zones", &raw.zones),
        ("networks", &raw.networks),
        ("user_agents", &raw.user_agents),
    ] {
        if !list.get_ref().is_empty() {
            scope.push(format!("{field}={}", list.get_ref().join(",")));
        }
    }
    if raw.credentials.get_ref().is_empty()
        && raw.principals.get_ref().is_empty()
        && raw.zones.get_ref().is_empty()
        && raw.networks.get_ref().is_empty()
        && raw.user_agents.get_ref().is_empty()
    {
        return Err(at(
            raw.id.span(),
            format!(
                "exception `{id}` names no credentials, principals, zones, networks or user_agents: it would silence {} for everyone (disable the rule instead)",
                if raw.rules.get_ref().is_empty() { "every rule".to_owned() } else { raw.rules.get_ref().join(", ") }
            ),
        ));
    }
    Ok(Exception {
        id: id.clone(),
        owner: raw.owner.into_inner(),
        reason: raw.reason.into_inner(),
        expires,
        file: name.to_owned(),
        rules: raw.rules.get_ref().clone(),
        credentials: globs(&raw.credentials, "credentials")?,
        principals: globs(&raw.principals, "principals")?,
        zones,
        networks,
        user_agents: globs(&raw.user_agents, "user_agents")?,
        scope: scope.join("; "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, Kind};
    use crate::state::StateStore;

    const CONFIG: &str = "[[zones]]\nname = \"ci\"\ncidrs = [\"10.2.0.0/16\"]\n";

    fn set(text: &str) -> Result<ExceptionSet, String> {
        let config = Config::parse("c.toml", CONFIG).unwrap();
        let rules: BTreeSet<String> = ["new-endpoint".to_owned(), "rate-spike".to_owned()].into();
        ExceptionSet::parse(&[("e.toml".to_owned(), text.to_owned())], &config, &rules).map_err(
            |errors| {
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            },
        )
    }

    const BOT: &str = r#"
[[exceptions]]
id = "terraform-ci-bot"
owner = "platform-team"
reason = "Terraform touches many APIs"
expires = "2026-03-02T00:00:00Z"
rules = ["new-endpoint"]
credentials = ["AKIACIBOT*"]
zones = ["ci"]
networks = ["10.2.0.0/16"]
user_agents = ["Terraform/*"]
"#;

    fn covered(set: &ExceptionSet, rule: &str, ts: &str, ip: &str, agent: &str) -> bool {
        let config = Config::parse("c.toml", CONFIG).unwrap();
        let store = StateStore::new();
        let mut event = Event::new(
            Timestamp::parse_rfc3339(ts).unwrap(),
            Kind::Access,
            "AKIACIBOT1",
        );
        event.source_ip = Some(ip.to_owned());
        event.user_agent = Some(agent.to_owned());
        let observation = store.locate(&event, &config);
        set.covering(rule, &observation).is_some()
    }

    #[test]
    fn every_given_scope_must_match_and_expiry_ends_it() {
        let set = set(BOT).unwrap();
        let ts = "2026-03-01T12:00:00Z";
        assert!(covered(
            &set,
            "new-endpoint",
            ts,
            "10.2.0.5",
            "Terraform/1.9.0"
        ));
        assert!(!covered(
            &set,
            "rate-spike",
            ts,
            "10.2.0.5",
            "Terraform/1.9.0"
        ));
        assert!(!covered(
            &set,
            "new-endpoint",
            ts,
            "203.0.113.5",
            "Terraform/1.9.0"
        ));
        assert!(!covered(&set, "new-endpoint", ts, "10.2.0.5", "curl/8.0"));
        let after = "2026-03-02T00:00:00Z";
        assert!(!covered(
            &set,
            "new-endpoint",
            after,
            "10.2.0.5",
            "Terraform/1.9.0"
        ));
        assert_eq!(set.all()[0].scope, "rules=new-endpoint; credentials=AKIACIBOT*; zones=ci; networks=10.2.0.0/16; user_agents=Terraform/*");
    }

    #[test]
    fn errors_name_the_file_line_and_field() {
        let error = set(&BOT.replace("\"new-endpoint\"]", "\"new-endpont\"]")).unwrap_err();
        assert!(error.starts_with("e.toml:7:"), "{error}");
        assert!(error.contains("unknown rule `new-endpont`"), "{error}");
        let error = set(&BOT.replace("[\"ci\"]", "[\"cj\"]")).unwrap_err();
        assert!(error.contains("unknown zone `cj`"), "{error}");
        let error = set(&BOT.replace("2026-03-02T00:00:00Z", "next week")).unwrap_err();
        assert!(
            error.starts_with("e.toml:6:") && error.contains("expires"),
            "{error}"
        );
        let error = set(&BOT.replace("owner = \"platform-team\"", "owner = \" \"")).unwrap_err();
        assert!(error.contains("owner"), "{error}");
        let error = set(&BOT.replace("owner =", "ownr =")).unwrap_err();
        assert!(error.contains("ownr"), "{error}");
        let unscoped = "[[exceptions]]\nid = \"all\"\nowner = \"x\"\nreason = \"y\"\nexpires = \"2027-01-01T00:00:00Z\"\nrules = [\"rate-spike\"]\n";
        let error = set(unscoped).unwrap_err();
        assert!(
            error.contains("would silence rate-spike for everyone"),
            "{error}"
        );
        let twice = format!("{BOT}{}", BOT);
        assert!(set(&twice).unwrap_err().contains("used twice"));
    }
}
