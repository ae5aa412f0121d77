//! Zones from AWS's published address ranges (`ip-ranges.json`), filtered by service and
//! region, so "calls from EC2 in eu-west-1" can be a zone without copying thousands of CIDRs.

use std::path::Path;

use ipnet::IpNet;
use serde::Deserialize;

/// `aws_ip_ranges = { file = "...", services = [...], regions = [...] }` in a `[[zones]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsIpRanges {
    /// Path to the JSON file, relative to the config file.
    pub file: String,
    /// Services to keep (`EC2`, `AMAZON`, `S3`, ...); empty keeps all.
    #[serde(default)]
    pub services: Vec<String>,
    /// Regions to keep (`us-east-1`, `GLOBAL`, ...); empty keeps all.
    #[serde(default)]
    pub regions: Vec<String>,
}

#[derive(Deserialize)]
struct File {
    #[serde(default)]
    prefixes: Vec<Prefix>,
    #[serde(default)]
    ipv6_prefixes: Vec<Prefix>,
}

#[derive(Deserialize)]
struct Prefix {
    #[serde(default)]
    ip_prefix: Option<String>,
    #[serde(default)]
    ipv6_prefix: Option<String>,
    #[serde(default)]
    region: String,
    #[serde(default)]
    service: String,
}

impl AwsIpRanges {
    /// The matching networks, read from `file` (relative to `base`).
    pub fn load(&self, base: Option<&Path>) -> Result<Vec<IpNet>, String> {
        let path = super::resolve(base, &self.file);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let file: File = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not ip-ranges.json: {e}", path.display()))?;
        let keep = |prefix: &Prefix| {
            (self.services.is_empty() || self.services.iter().any(|s| s == &prefix.service))
                && (self.regions.is_empty() || self.regions.iter().any(|r| r == &prefix.region))
        };
        let mut networks = Vec::new();
        for prefix in file
            .prefixes
            .iter()
            .chain(&file.ipv6_prefixes)
            .filter(|p| keep(p))
        {
            let Some(text) = prefix
                .ip_prefix
                .as_deref()
                .or(prefix.ipv6_prefix.as_deref())
            else {
                continue;
            };
            let net: IpNet = text
                .parse()
                .map_err(|_| format!("{}: invalid prefix `{text}`", path.display()))?;
            networks.push(net.trunc());
        }
        networks.sort();
        networks.dedup();
        if networks.is_empty() {
            return Err(format!(
                "{}: no prefix matches services {:?} and regions {:?}",
                path.display(),
                self.services,
                self.regions
            ));
        }
        Ok(networks)
    }
}
