//! Zones: where a call came from, as a named trust zone.
//!
//! Maps a source address (longest-prefix match over the configured CIDRs, IPv4 and IPv6) or,
//! failing that, the event's declared environment to a [`ZoneId`]. Addresses that match no
//! configured network are `internet` when publicly routable and `unknown` otherwise; a missing
//! or unparsable address is `unknown`. Zone ids are small integers so a credential's zones fit
//! in one 64-bit [`ZoneSet`].
//!
//! Also here: [`Network`], the /24 (IPv4) or /48 (IPv6) prefix a baseline remembers.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Index of a zone in the [`ZoneTable`].
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct ZoneId(u8);

impl ZoneId {
    /// No address, or one we cannot place (unparsable, private but unconfigured).
    pub const UNKNOWN: ZoneId = ZoneId(0);
    /// A public address outside every configured zone.
    pub const INTERNET: ZoneId = ZoneId(1);

    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// At most this many zones, built-ins included, so a [`ZoneSet`] is one `u64`.
pub const MAX_ZONES: usize = 64;

/// A set of zones as a bitset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct ZoneSet(u64);

impl ZoneSet {
    pub const EMPTY: ZoneSet = ZoneSet(0);

    pub fn insert(&mut self, zone: ZoneId) {
        self.0 |= 1 << zone.0;
    }

    pub fn contains(self, zone: ZoneId) -> bool {
        self.0 & (1 << zone.0) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    pub fn bits(self) -> u64 {
        self.0
    }

    pub fn from_bits(bits: u64) -> Self {
        ZoneSet(bits)
    }

    /// Zones in id order.
    pub fn iter(self) -> impl Iterator<Item = ZoneId> {
        (0..MAX_ZONES as u8)
            .filter(move |i| self.0 & (1 << i) != 0)
            .map(ZoneId)
    }
}

impl FromIterator<ZoneId> for ZoneSet {
    fn from_iter<T: IntoIterator<Item = ZoneId>>(iter: T) -> Self {
        let mut set = ZoneSet::EMPTY;
        for zone in iter {
            set.insert(zone);
        }
        set
    }
}

/// The network a baseline remembers for an address: its /24 (IPv4) or /48 (IPv6). 8 bytes,
/// 4-aligned: a credential's record holds several.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Network {
    V4(u32),
    V6(Prefix48),
}

/// The 48 bits of an IPv6 /48, as three 16-bit words (most significant first), so that a
/// [`Network`] needs no 8-byte alignment. Serialized as the number they make.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix48([u16; 3]);

impl Prefix48 {
    /// The low 48 bits of `bits`.
    pub fn from_bits(bits: u64) -> Prefix48 {
        Prefix48([(bits >> 32) as u16, (bits >> 16) as u16, bits as u16])
    }

    pub fn bits(self) -> u64 {
        let [high, middle, low] = self.0.map(u64::from);
        high << 32 | middle << 16 | low
    }
}

impl Serialize for Prefix48 {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.bits())
    }
}

impl<'de> Deserialize<'de> for Prefix48 {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bits = u64::deserialize(deserializer)?;
        if bits >> 48 != 0 {
            return Err(serde::de::Error::custom("an IPv6 /48 prefix has 48 bits"));
        }
        Ok(Prefix48::from_bits(bits))
    }
}

impl Network {
    /// Appends the network as `Display` writes it (`10.1.2.0/24`), without `fmt`'s machinery
    /// for IPv4: suppression keys each finding it counts by its network's text, which
    /// `write!` made about 1,000 instructions a finding.
    pub fn push_to(&self, out: &mut String) {
        match *self {
            Network::V4(prefix) => write_v4(prefix, out),
            Network::V6(_) => {
                use std::fmt::Write;
                write!(out, "{self}")
            }
        }
        .expect("writing to a String");
    }

    pub fn of(ip: IpAddr) -> Network {
        match canonical(ip) {
            IpAddr::V4(v4) => Network::V4(u32::from(v4) & 0xFFFF_FF00),
            IpAddr::V6(v6) => Network::V6(Prefix48::from_bits((u128::from(v6) >> 80) as u64)),
        }
    }
}

/// An IPv4 /24 as `a.b.c.0/24`, digit by digit: the one spelling of [`Network::push_to`]
/// and `Display`.
fn write_v4(prefix: u32, out: &mut impl fmt::Write) -> fmt::Result {
    for (i, octet) in prefix.to_be_bytes().into_iter().enumerate() {
        if i > 0 {
            out.write_char('.')?;
        }
        if octet >= 100 {
            out.write_char(char::from(b'0' + octet / 100))?;
        }
        if octet >= 10 {
            out.write_char(char::from(b'0' + octet / 10 % 10))?;
        }
        out.write_char(char::from(b'0' + octet % 10))?;
    }
    out.write_str("/24")
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Network::V4(prefix) => write_v4(prefix, f),
            Network::V6(prefix) => {
                write!(f, "{}/48", Ipv6Addr::from(u128::from(prefix.bits()) << 80))
            }
        }
    }
}

/// Parses an address as logs write it: bare, `[v6]`, `v4:port` or `[v6]:port`.
pub fn parse_ip(text: &str) -> Option<IpAddr> {
    let text = crate::text::trim(text);
    if let Some(v4) = dotted_quad(text.as_bytes()) {
        return Some(IpAddr::V4(v4));
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(socket) = text.parse::<std::net::SocketAddr>() {
        return Some(canonical(socket.ip()));
    }
    text.strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|inner| inner.parse::<IpAddr>().ok())
        .map(canonical)
}

/// The plain IPv4 form `a.b.c.d` (decimal, no leading zeros), octet by octet: most addresses
/// in logs. `None` for anything else, which `std`'s parsers then read or reject; on digits and
/// dots the answer is `std`'s (a property test checks).
fn dotted_quad(text: &[u8]) -> Option<std::net::Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut at = 0;
    for (n, octet) in octets.iter_mut().enumerate() {
        if n > 0 {
            if text.get(at) != Some(&b'.') {
                return None;
            }
            at += 1;
        }
        let (value, len) = decimal_octet(text.get(at..)?)?;
        *octet = value;
        at += len;
    }
    (at == text.len()).then(|| std::net::Ipv4Addr::from(octets))
}

/// The octet at the start of `text`, and how many bytes it takes: one to three digits, no
/// leading zero, at most 255. What follows is the caller's to check (a fourth digit is not a
/// dot).
fn decimal_octet(text: &[u8]) -> Option<(u8, usize)> {
    let digit = |at: usize| {
        text.get(at)
            .map(|byte| byte.wrapping_sub(b'0'))
            .filter(|d| *d < 10)
    };
    let first = digit(0)?;
    let Some(second) = digit(1) else {
        return Some((first, 1));
    };
    if first == 0 {
        return None;
    }
    let Some(third) = digit(2) else {
        return Some((first * 10 + second, 2));
    };
    let value = u16::from(first) * 100 + u16::from(second) * 10 + u16::from(third);
    Some((u8::try_from(value).ok()?, 3))
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) are treated as the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Whether an address is routable on the public internet. Documentation ranges
/// (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32) count as public because
/// examples and tests use them as stand-ins for public addresses.
pub fn is_public(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// A zone as configured.
#[derive(Clone, Debug)]
pub struct ZoneSpec {
    pub name: String,
    pub cidrs: Vec<IpNet>,
    pub environments: Vec<String>,
}

/// Resolves addresses and declared environments to zones.
#[derive(Clone, Debug)]
pub struct ZoneTable {
    names: Vec<String>,
    by_name: HashMap<String, ZoneId, crate::state::Hashing>,
    environments: HashMap<String, ZoneId, crate::state::Hashing>,
    v4: PrefixTable<u32>,
    v6: PrefixTable<u128>,
}

/// Why a zone table could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZoneError {
    #[error("zone name `{0}` is reserved (built-in zones: unknown, internet)")]
    Reserved(String),
    #[error("zone `{0}` is defined twice")]
    Duplicate(String),
    #[error("zone name must be non-empty letters, digits, `-`, `_` or `.`; got `{0}`")]
    BadName(String),
    #[error("network {cidr} is in both zone `{first}` and zone `{second}`")]
    SameNetwork {
        cidr: IpNet,
        first: String,
        second: String,
    },
    #[error("environment `{environment}` maps to both zone `{first}` and zone `{second}`")]
    SameEnvironment {
        environment: String,
        first: String,
        second: String,
    },
    #[error("too many zones: at most {} can be configured", MAX_ZONES - 2)]
    TooMany,
}

impl ZoneTable {
    pub fn new(specs: &[ZoneSpec]) -> Result<ZoneTable, ZoneError> {
        let mut table = ZoneTable {
            names: vec!["unknown".to_owned(), "internet".to_owned()],
            by_name: HashMap::default(),
            environments: HashMap::default(),
            v4: PrefixTable::default(),
            v6: PrefixTable::default(),
        };
        table.by_name.insert("unknown".into(), ZoneId::UNKNOWN);
        table.by_name.insert("internet".into(), ZoneId::INTERNET);
        if specs.len() > MAX_ZONES - 2 {
            return Err(ZoneError::TooMany);
        }
        for spec in specs {
            let valid = !spec.name.is_empty()
                && spec
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !valid {
                return Err(ZoneError::BadName(spec.name.clone()));
            }
            if spec.name == "unknown" || spec.name == "internet" {
                return Err(ZoneError::Reserved(spec.name.clone()));
            }
            if table.by_name.contains_key(&spec.name) {
                return Err(ZoneError::Duplicate(spec.name.clone()));
            }
            let id = ZoneId(table.names.len() as u8);
            table.names.push(spec.name.clone());
            table.by_name.insert(spec.name.clone(), id);
            for cidr in &spec.cidrs {
                let previous = match cidr.trunc() {
                    IpNet::V4(net) => table.v4.insert(u32::from(net.addr()), net.prefix_len(), id),
                    IpNet::V6(net) => table
                        .v6
                        .insert(u128::from(net.addr()), net.prefix_len(), id),
                };
                if let Some(other) = previous {
                    return Err(ZoneError::SameNetwork {
                        cidr: *cidr,
                        first: table.names[other.index()].clone(),
                        second: spec.name.clone(),
                    });
                }
            }
            for environment in &spec.environments {
                if let Some(other) = table.environments.insert(environment.clone(), id) {
                    return Err(ZoneError::SameEnvironment {
                        environment: environment.clone(),
                        first: table.names[other.index()].clone(),
                        second: spec.name.clone(),
                    });
                }
            }
        }
        Ok(table)
    }

    /// The zone of a call: the configured network containing `ip` (longest prefix wins), else
    /// the zone of the declared environment, else `internet` for public and `unknown` for
    /// other or missing addresses.
    pub fn classify(&self, ip: Option<IpAddr>, declared: Option<&str>) -> ZoneId {
        if let Some(ip) = ip {
            let hit = match ip {
                IpAddr::V4(v4) => self.v4.lookup(u32::from(v4)),
                IpAddr::V6(v6) => self.v6.lookup(u128::from(v6)),
            };
            if let Some(zone) = hit {
                return zone;
            }
        }
        if let Some(zone) = declared.and_then(|name| self.environments.get(name)) {
            return *zone;
        }
        match ip {
            Some(ip) if is_public(ip) => ZoneId::INTERNET,
            _ => ZoneId::UNKNOWN,
        }
    }

    pub fn name(&self, zone: ZoneId) -> &str {
        self.names
            .get(zone.index())
            .map_or("unknown", String::as_str)
    }

    pub fn id(&self, name: &str) -> Option<ZoneId> {
        self.by_name.get(name).copied()
    }

    /// Zone names of a set, in id order.
    pub fn names_of(&self, set: ZoneSet) -> Vec<&str> {
        set.iter().map(|zone| self.name(zone)).collect()
    }

    /// All zone names, built-ins first.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// Exact-match maps per prefix length, probed from the longest length present; a table of
/// few prefixes is scanned instead.
#[derive(Clone, Debug, Default)]
struct PrefixTable<A> {
    /// Prefix lengths in use, longest first.
    lengths: Vec<u8>,
    entries: HashMap<(u8, A), ZoneId, crate::state::Hashing>,
    /// Every prefix as (length, prefix, zone), longest first.
    listed: Vec<(u8, A, ZoneId)>,
}

/// Up to this many prefixes a lookup scans them all, longest first, rather than probing the
/// map at each length: a typical zone file has a few networks at two or three lengths, and a
/// probe hashes its key, where a scan entry is a mask and a compare.
const SCANNED_PREFIXES: usize = 16;

trait Address: Copy + Eq + std::hash::Hash {
    const BITS: u8;
    fn mask(self, len: u8) -> Self;
}

impl Address for u32 {
    const BITS: u8 = 32;
    fn mask(self, len: u8) -> Self {
        if len == 0 {
            0
        } else {
            self & (u32::MAX << (32 - len as u32))
        }
    }
}

impl Address for u128 {
    const BITS: u8 = 128;
    fn mask(self, len: u8) -> Self {
        if len == 0 {
            0
        } else {
            self & (u128::MAX << (128 - len as u32))
        }
    }
}

impl<A: Address> PrefixTable<A> {
    /// Returns the zone already holding exactly this prefix, if any.
    fn insert(&mut self, addr: A, len: u8, zone: ZoneId) -> Option<ZoneId> {
        let len = len.min(A::BITS);
        let key = (len, addr.mask(len));
        if let Some(existing) = self.entries.get(&key) {
            return (*existing != zone).then_some(*existing);
        }
        self.entries.insert(key, zone);
        if !self.lengths.contains(&len) {
            self.lengths.push(len);
            self.lengths.sort_unstable_by(|a, b| b.cmp(a));
        }
        // Longest first; prefixes of one length are disjoint, so their order is free.
        let at = self.listed.partition_point(|&(longer, _, _)| longer >= len);
        self.listed.insert(at, (len, key.1, zone));
        None
    }

    fn lookup(&self, addr: A) -> Option<ZoneId> {
        if self.listed.len() <= SCANNED_PREFIXES {
            self.scan(addr)
        } else {
            self.probe(addr)
        }
    }

    /// The longest prefix holding `addr`, by a scan of every prefix.
    fn scan(&self, addr: A) -> Option<ZoneId> {
        self.listed
            .iter()
            .find(|&&(len, prefix, _)| addr.mask(len) == prefix)
            .map(|&(_, _, zone)| zone)
    }

    /// The longest prefix holding `addr`, by a probe of the map at each length.
    fn probe(&self, addr: A) -> Option<ZoneId> {
        self.lengths
            .iter()
            .find_map(|&len| self.entries.get(&(len, addr.mask(len))).copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_network_is_eight_bytes_and_keeps_its_serialized_form() {
        assert_eq!(std::mem::size_of::<Network>(), 8);
        let v6 = Network::of("2001:db8:abcd:12::1".parse().unwrap());
        assert_eq!(v6.to_string(), "2001:db8:abcd::/48");
        // The encoding a checkpoint had when the prefix was a u64: variant 1, then the number.
        let bytes = postcard::to_stdvec(&v6).unwrap();
        assert_eq!(
            bytes,
            postcard::to_stdvec(&(1u32, 0x2001_0db8_abcd_u64)).unwrap()
        );
        assert_eq!(postcard::from_bytes::<Network>(&bytes).unwrap(), v6);
        let wide = postcard::to_stdvec(&(1u32, 1u64 << 48)).unwrap();
        assert!(postcard::from_bytes::<Network>(&wide).is_err());
        let mut sorted = [v6, Network::of("2001:db8:abcc::1".parse().unwrap())];
        sorted.sort();
        assert_eq!(sorted[0].to_string(), "2001:db8:abcc::/48");
    }

    proptest! {
        /// The one-pass IPv4 reader agrees with `std` wherever it answers, answers wherever
        /// `std` does on digits and dots, and answers for every address `std` prints.
        #[test]
        fn dotted_quads_read_as_std_reads_them(
            text in "[0-9.a]{0,16}",
            near in "([0-9]{1,4}\\.){2,4}[0-9]{0,4}",
            octets: [u8; 4],
        ) {
            if let Some(fast) = dotted_quad(text.as_bytes()) {
                prop_assert_eq!(Ok(fast), text.parse::<std::net::Ipv4Addr>());
            }
            prop_assert_eq!(dotted_quad(near.as_bytes()), near.parse::<std::net::Ipv4Addr>().ok());
            let printed = std::net::Ipv4Addr::from(octets).to_string();
            prop_assert_eq!(dotted_quad(printed.as_bytes()), Some(std::net::Ipv4Addr::from(octets)));
        }

        /// A scan of the prefixes and a probe of the map at each length find the same zone,
        /// for tables of prefixes drawn near one another (so that they nest and overlap).
        #[test]
        fn scanned_and_probed_prefixes_agree(
            prefixes in proptest::collection::vec((0u32..64, 0u8..=32), 0..24),
            addrs in proptest::collection::vec(0u32..64, 1..16),
        ) {
            let mut table = PrefixTable::<u32>::default();
            for (zone, &(high, len)) in prefixes.iter().enumerate() {
                table.insert(high << 26, len, ZoneId(zone as u8 + 2));
            }
            for addr in addrs {
                let addr = addr << 26 | 0x2a;
                prop_assert_eq!(table.scan(addr), table.probe(addr), "{:#x}", addr);
            }
        }

        /// `push_to` appends what `Display` writes, for both families, and the IPv4 form is
        /// the address's as `std` prints it, with its /24.
        #[test]
        fn a_network_is_pushed_as_it_is_displayed(v4: u32, v6: u128, before in "[a-z]{0,3}") {
            for network in [
                Network::of(IpAddr::V4(v4.into())),
                Network::of(IpAddr::V6(v6.into())),
            ] {
                let mut text = before.clone();
                network.push_to(&mut text);
                prop_assert_eq!(text, format!("{before}{network}"));
            }
            prop_assert_eq!(
                Network::of(IpAddr::V4(v4.into())).to_string(),
                format!("{}/24", std::net::Ipv4Addr::from(v4 & 0xFFFF_FF00))
            );
        }
    }

    fn spec(name: &str, cidrs: &[&str], environments: &[&str]) -> ZoneSpec {
        ZoneSpec {
            name: name.into(),
            cidrs: cidrs.iter().map(|c| c.parse().unwrap()).collect(),
            environments: environments.iter().map(|e| e.to_string()).collect(),
        }
    }

    fn table() -> ZoneTable {
        ZoneTable::new(&[
            spec("prod", &["10.0.0.0/16", "2001:db8:1::/48"], &["production"]),
            spec("bastion", &["10.0.9.0/24"], &[]),
            spec("ci", &["10.2.0.0/16"], &["ci"]),
        ])
        .unwrap()
    }

    fn zone(table: &ZoneTable, ip: &str, declared: Option<&str>) -> String {
        table
            .name(table.classify(parse_ip(ip), declared))
            .to_owned()
    }

    #[test]
    fn longest_prefix_wins() {
        let t = table();
        assert_eq!(zone(&t, "10.0.1.5", None), "prod");
        assert_eq!(zone(&t, "10.0.9.5", None), "bastion");
        assert_eq!(zone(&t, "2001:db8:1:ff::1", None), "prod");
    }

    #[test]
    fn unmatched_addresses_are_internet_or_unknown() {
        let t = table();
        assert_eq!(zone(&t, "203.0.113.7", None), "internet");
        assert_eq!(zone(&t, "2a00:1450::1", None), "internet");
        assert_eq!(zone(&t, "192.168.1.1", None), "unknown");
        assert_eq!(zone(&t, "fd00::1", None), "unknown");
        assert_eq!(zone(&t, "08.1.250.216", None), "unknown");
        assert_eq!(zone(&t, "", None), "unknown");
    }

    #[test]
    fn declared_environment_applies_when_the_address_does_not_match() {
        let t = table();
        assert_eq!(zone(&t, "", Some("production")), "prod");
        assert_eq!(zone(&t, "203.0.113.7", Some("ci")), "ci");
        assert_eq!(
            zone(&t, "10.0.1.5", Some("ci")),
            "prod",
            "a configured network beats the declaration"
        );
    }

    #[test]
    fn the_one_pass_reader_takes_plain_quads_and_leaves_the_rest() {
        for text in ["0.0.0.0", "10.0.1.5", "255.255.255.255", "1.22.103.4"] {
            assert_eq!(dotted_quad(text.as_bytes()), text.parse().ok(), "{text}");
        }
        for text in [
            "01.2.3.4",
            "1.2.3.00",
            "256.1.1.1",
            "1000.1.1.1",
            "1.2.3",
            "1.2.3.4.",
            ".1.2.3",
            "1..2.3",
            "1.2.3.4.5",
            "1.2.3.x",
            "",
            " 1.2.3.4",
        ] {
            assert_eq!(dotted_quad(text.as_bytes()), None, "{text:?}");
        }
        // What it leaves, std reads or rejects: surrounding space is trimmed first.
        assert_eq!(parse_ip(" 10.0.1.5\t"), Some("10.0.1.5".parse().unwrap()));
        assert_eq!(parse_ip("01.2.3.4"), None);
    }

    #[test]
    fn addresses_with_ports_and_mapped_v4_parse() {
        assert_eq!(parse_ip("10.0.1.5:443"), Some("10.0.1.5".parse().unwrap()));
        assert_eq!(
            parse_ip("[2001:db8::1]:443"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(
            parse_ip("::ffff:10.0.1.5"),
            Some("10.0.1.5".parse().unwrap())
        );
        assert_eq!(parse_ip("ec2.amazonaws.com"), None);
    }

    #[test]
    fn networks_are_24_and_48_prefixes() {
        assert_eq!(
            Network::of("10.0.1.77".parse().unwrap()).to_string(),
            "10.0.1.0/24"
        );
        assert_eq!(
            Network::of("2001:db8:1:2::9".parse().unwrap()).to_string(),
            "2001:db8:1::/48"
        );
    }

    #[test]
    fn rejects_reserved_duplicate_and_conflicting_zones() {
        assert!(matches!(
            ZoneTable::new(&[spec("internet", &[], &[])]),
            Err(ZoneError::Reserved(_))
        ));
        assert!(matches!(
            ZoneTable::new(&[spec("a", &[], &[]), spec("a", &[], &[])]),
            Err(ZoneError::Duplicate(_))
        ));
        assert!(matches!(
            ZoneTable::new(&[
                spec("a", &["10.0.0.0/8"], &[]),
                spec("b", &["10.0.0.0/8"], &[])
            ]),
            Err(ZoneError::SameNetwork { .. })
        ));
        assert!(matches!(
            ZoneTable::new(&[spec("bad name", &[], &[])]),
            Err(ZoneError::BadName(_))
        ));
    }

    #[test]
    fn zone_sets_iterate_in_id_order() {
        let t = table();
        let set: ZoneSet = [t.id("ci").unwrap(), t.id("prod").unwrap()]
            .into_iter()
            .collect();
        assert_eq!(t.names_of(set), vec!["prod", "ci"]);
        assert_eq!(set.len(), 2);
    }
}
