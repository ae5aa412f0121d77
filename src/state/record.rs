//! The memory layout of a credential's record: one allocation per credential.
//!
//! A store holds millions of records, so each is a single heap block, owned through one
//! pointer (the map's slot is 8 bytes):
//!
//! ```text
//! | Fields (96) | Tail (8) | networks: n × 16 | endpoints, then user agents: m × 12 | id |
//! ```
//!
//! [`Fields`] are the record's fixed-size facts, reached through `Deref` like a plain struct's
//! fields. [`Tail`] holds the lengths of what follows and the few byte-sized fields, behind
//! methods: it describes the block, so safe code must not be able to overwrite it (assigning
//! a whole `Fields` through `DerefMut` leaves it alone). The lists hold `Copy` entries, 4-byte
//! aligned; the credential id (its key in the store) comes last, so that for a 20-byte AWS key
//! id, 4 networks and 8 endpoints and an agent the block is 296 bytes, a 304-byte chunk with
//! glibc's 8 bytes (BENCHMARKS.md, section 4).
//!
//! Everything `unsafe` in the state module is in this file.

use std::alloc::{self, Layout};
use std::mem::{align_of, offset_of, size_of};
use std::ops::{Deref, DerefMut};
use std::ptr::{self, NonNull};

use super::credential::{AllowedFrom, Fields, Seen};
use super::{Home, Symbol};
use crate::zones::{Network, ZoneId};

/// The block's byte-sized fields and the lengths of its variable parts.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Tail {
    home: Home,
    allowed_from: AllowedFrom,
    last_zone: ZoneId,
    networks: u8,
    endpoints: u8,
    agents: u8,
    /// The id's length when below [`LONG_ID`]; at `LONG_ID`, the id area starts with its
    /// length as 4 bytes (unaligned, little-endian).
    id_len: u8,
}

/// An id of this many bytes or more keeps its length in its own area.
const LONG_ID: u8 = u8::MAX;

#[repr(C)]
struct Head {
    fields: Fields,
    tail: Tail,
}

const HEAD: usize = size_of::<Head>();
const NETWORK: usize = size_of::<Seen<Network>>();
const SYMBOL: usize = size_of::<Seen<Symbol>>();
const ALIGN: usize = align_of::<Head>();

// The lists start right after the head and follow each other: every part must leave the next
// one aligned.
const _: () = assert!(HEAD.is_multiple_of(align_of::<Seen<Network>>()));
const _: () = assert!(HEAD.is_multiple_of(align_of::<Seen<Symbol>>()));
const _: () = assert!(NETWORK.is_multiple_of(align_of::<Seen<Symbol>>()));
const _: () = assert!(offset_of!(Head, tail) == size_of::<Fields>());

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, ALIGN).expect("a record's layout")
}

/// What credwatch knows about one credential: its [`Fields`] (through `Deref`), its lists of
/// networks, endpoints and user agents, and its id, in one allocation (see the module
/// documentation).
pub struct CredentialState {
    head: NonNull<Head>,
}

// SAFETY: the record owns its block, which holds only `Send + Sync` data (`Fields`, `Copy`
// entries and bytes); `&self` methods only read.
unsafe impl Send for CredentialState {}
unsafe impl Sync for CredentialState {}

impl Default for CredentialState {
    fn default() -> Self {
        CredentialState::with_fields(Fields::default())
    }
}

impl CredentialState {
    /// A record holding `fields`, with no lists and an empty id.
    pub fn with_fields(fields: Fields) -> Self {
        let layout = layout(HEAD);
        // SAFETY: the layout has a non-zero size; the block is written whole before use.
        unsafe {
            let block = alloc::alloc(layout).cast::<Head>();
            let Some(head) = NonNull::new(block) else {
                alloc::handle_alloc_error(layout)
            };
            head.as_ptr().write(Head {
                fields,
                tail: Tail::default(),
            });
            CredentialState { head }
        }
    }

    fn base(&self) -> *mut u8 {
        self.head.as_ptr().cast()
    }

    fn tail(&self) -> &Tail {
        // SAFETY: the head is initialized for the record's life.
        unsafe { &(*self.head.as_ptr()).tail }
    }

    fn tail_mut(&mut self) -> &mut Tail {
        // SAFETY: as `tail`, and `&mut self` is the only access.
        unsafe { &mut (*self.head.as_ptr()).tail }
    }

    fn symbols_at(&self) -> usize {
        HEAD + NETWORK * usize::from(self.tail().networks)
    }

    fn symbol_count(&self) -> usize {
        usize::from(self.tail().endpoints) + usize::from(self.tail().agents)
    }

    fn id_at(&self) -> usize {
        self.symbols_at() + SYMBOL * self.symbol_count()
    }

    /// The id's bytes: where they start and how many.
    fn id_bytes(&self) -> (usize, usize) {
        let at = self.id_at();
        if self.tail().id_len < LONG_ID {
            return (at, usize::from(self.tail().id_len));
        }
        let mut len = [0u8; 4];
        // SAFETY: a long id's area starts with its 4-byte length, inside the block.
        unsafe { ptr::copy_nonoverlapping(self.base().add(at), len.as_mut_ptr(), 4) };
        (at + 4, u32::from_le_bytes(len) as usize)
    }

    /// The block's size in bytes.
    pub(super) fn block_size(&self) -> usize {
        let (at, len) = self.id_bytes();
        at + len
    }

    /// The credential's id: its key in the store (empty for a record not in one).
    pub fn id(&self) -> &str {
        let (at, len) = self.id_bytes();
        // SAFETY: the id area holds `len` bytes copied from a `str`.
        unsafe {
            let bytes = std::slice::from_raw_parts(self.base().add(at), len);
            std::str::from_utf8_unchecked(bytes)
        }
    }

    /// The networks used from, least recently added first.
    pub fn networks(&self) -> &[Seen<Network>] {
        // SAFETY: `networks` initialized entries start at HEAD, which is aligned for them.
        unsafe {
            std::slice::from_raw_parts(
                self.base().add(HEAD).cast(),
                usize::from(self.tail().networks),
            )
        }
    }

    pub(super) fn networks_mut(&mut self) -> &mut [Seen<Network>] {
        let len = usize::from(self.tail().networks);
        // SAFETY: as `networks`, with `&mut self` the only access.
        unsafe { std::slice::from_raw_parts_mut(self.base().add(HEAD).cast(), len) }
    }

    /// The endpoints, then the user agents.
    fn all_symbols(&self) -> &[Seen<Symbol>] {
        // SAFETY: the symbol entries follow the networks, aligned (see the asserts above).
        unsafe {
            std::slice::from_raw_parts(
                self.base().add(self.symbols_at()).cast(),
                self.symbol_count(),
            )
        }
    }

    pub(super) fn symbols_mut(&mut self) -> &mut [Seen<Symbol>] {
        let (at, len) = (self.symbols_at(), self.symbol_count());
        // SAFETY: as `symbols`, with `&mut self` the only access.
        unsafe { std::slice::from_raw_parts_mut(self.base().add(at).cast(), len) }
    }

    /// The endpoints called, interned.
    pub fn endpoints(&self) -> &[Seen<Symbol>] {
        &self.all_symbols()[..usize::from(self.tail().endpoints)]
    }

    pub(super) fn endpoints_mut(&mut self) -> &mut [Seen<Symbol>] {
        let endpoints = usize::from(self.tail().endpoints);
        &mut self.symbols_mut()[..endpoints]
    }

    /// The user agents seen, by product, interned.
    pub fn user_agents(&self) -> &[Seen<Symbol>] {
        &self.all_symbols()[usize::from(self.tail().endpoints)..]
    }

    pub(super) fn user_agents_mut(&mut self) -> &mut [Seen<Symbol>] {
        let endpoints = usize::from(self.tail().endpoints);
        &mut self.symbols_mut()[endpoints..]
    }

    /// Where the allowed zones come from.
    pub fn allowed_from(&self) -> AllowedFrom {
        self.tail().allowed_from
    }

    pub fn set_allowed_from(&mut self, from: AllowedFrom) {
        self.tail_mut().allowed_from = from;
    }

    /// The input partition whose event touched the record last ([`Home`]).
    pub fn home(&self) -> Home {
        self.tail().home
    }

    pub fn set_home(&mut self, home: Home) {
        self.tail_mut().home = home;
    }

    pub(super) fn last_zone_byte(&self) -> ZoneId {
        self.tail().last_zone
    }

    pub(super) fn set_last_zone_byte(&mut self, zone: ZoneId) {
        self.tail_mut().last_zone = zone;
    }

    /// Makes room for `by` bytes at byte `at` of the block, moving what follows.
    fn open(&mut self, at: usize, by: usize) {
        let old = self.block_size();
        debug_assert!(at <= old);
        let new = old + by;
        // SAFETY: the block was allocated with `layout(old)`; realloc keeps its first `old`
        // bytes, and the copy moves the bytes from `at` within the grown block.
        unsafe {
            let block = alloc::realloc(self.base(), layout(old), new);
            if block.is_null() {
                alloc::handle_alloc_error(layout(new))
            }
            ptr::copy(block.add(at), block.add(at + by), old - at);
            self.head = NonNull::new_unchecked(block.cast());
        }
    }

    /// Removes `by` bytes at byte `at` of the block, moving what follows back.
    fn close(&mut self, at: usize, by: usize) {
        let old = self.block_size();
        debug_assert!(at + by <= old && at >= HEAD);
        let new = old - by;
        // SAFETY: the bytes after the closed range move down inside the block, which then
        // shrinks to `new` (at least HEAD) bytes.
        unsafe {
            ptr::copy(self.base().add(at + by), self.base().add(at), old - at - by);
            let block = alloc::realloc(self.base(), layout(old), new);
            if block.is_null() {
                alloc::handle_alloc_error(layout(new))
            }
            self.head = NonNull::new_unchecked(block.cast());
        }
    }

    /// Appends a network. The list holds at most 255 (`max_networks` is a byte).
    pub(super) fn push_network(&mut self, entry: Seen<Network>) {
        assert!(self.tail().networks < u8::MAX, "at most 255 networks");
        let at = self.symbols_at();
        self.open(at, NETWORK);
        // SAFETY: `open` made NETWORK bytes at `at`, aligned for a network entry.
        unsafe { self.base().add(at).cast::<Seen<Network>>().write(entry) };
        self.tail_mut().networks += 1;
    }

    /// Appends an endpoint (at most 255).
    pub(super) fn push_endpoint(&mut self, entry: Seen<Symbol>) {
        assert!(self.tail().endpoints < u8::MAX, "at most 255 endpoints");
        let at = self.symbols_at() + SYMBOL * usize::from(self.tail().endpoints);
        self.insert_symbol(at, entry);
        self.tail_mut().endpoints += 1;
    }

    /// Appends a user agent (at most 255).
    pub(super) fn push_user_agent(&mut self, entry: Seen<Symbol>) {
        assert!(self.tail().agents < u8::MAX, "at most 255 user agents");
        let at = self.id_at();
        self.insert_symbol(at, entry);
        self.tail_mut().agents += 1;
    }

    fn insert_symbol(&mut self, at: usize, entry: Seen<Symbol>) {
        self.open(at, SYMBOL);
        // SAFETY: `open` made SYMBOL bytes at `at`, aligned for a symbol entry.
        unsafe { self.base().add(at).cast::<Seen<Symbol>>().write(entry) };
    }

    /// Replaces the three lists (each at most 255 entries long: longer lists are cut).
    pub fn set_lists(
        &mut self,
        networks: &[Seen<Network>],
        endpoints: &[Seen<Symbol>],
        user_agents: &[Seen<Symbol>],
    ) {
        let cut = |len: usize| len.min(usize::from(u8::MAX));
        let networks = &networks[..cut(networks.len())];
        let endpoints = &endpoints[..cut(endpoints.len())];
        let user_agents = &user_agents[..cut(user_agents.len())];
        // Drop the old lists, keeping the id right after the head.
        let lists = self.id_at() - HEAD;
        self.close(HEAD, lists);
        {
            let tail = self.tail_mut();
            tail.networks = 0;
            tail.endpoints = 0;
            tail.agents = 0;
        }
        let bytes = NETWORK * networks.len() + SYMBOL * (endpoints.len() + user_agents.len());
        self.open(HEAD, bytes);
        // SAFETY: `open` made room for the entries right after the head, each part aligned.
        unsafe {
            let networks_at = self.base().add(HEAD).cast::<Seen<Network>>();
            ptr::copy_nonoverlapping(networks.as_ptr(), networks_at, networks.len());
            let symbols_at = networks_at.add(networks.len()).cast::<Seen<Symbol>>();
            ptr::copy_nonoverlapping(endpoints.as_ptr(), symbols_at, endpoints.len());
            ptr::copy_nonoverlapping(
                user_agents.as_ptr(),
                symbols_at.add(endpoints.len()),
                user_agents.len(),
            );
        }
        let tail = self.tail_mut();
        tail.networks = networks.len() as u8;
        tail.endpoints = endpoints.len() as u8;
        tail.agents = user_agents.len() as u8;
    }

    /// Sets the record's id (its key in the store).
    pub(super) fn set_id(&mut self, id: &str) {
        if self.id() == id {
            return;
        }
        let (start, len) = self.id_bytes();
        let area = self.id_at();
        self.close(area, start + len - area);
        // The block has no id now: its size must not be read through the old length.
        self.tail_mut().id_len = 0;
        let long = id.len() >= usize::from(LONG_ID);
        let prefix = if long { 4 } else { 0 };
        self.open(area, prefix + id.len());
        // SAFETY: `open` made the id area's bytes at the block's end.
        unsafe {
            if long {
                let len = u32::try_from(id.len()).expect("an id under 4 GiB");
                ptr::copy_nonoverlapping(len.to_le_bytes().as_ptr(), self.base().add(area), 4);
            }
            ptr::copy_nonoverlapping(id.as_ptr(), self.base().add(area + prefix), id.len());
        }
        self.tail_mut().id_len = if long { LONG_ID } else { id.len() as u8 };
    }
}

impl Deref for CredentialState {
    type Target = Fields;

    fn deref(&self) -> &Fields {
        // SAFETY: the head is initialized for the record's life.
        unsafe { &(*self.head.as_ptr()).fields }
    }
}

impl DerefMut for CredentialState {
    fn deref_mut(&mut self) -> &mut Fields {
        // SAFETY: as `deref`, with `&mut self` the only access.
        unsafe { &mut (*self.head.as_ptr()).fields }
    }
}

impl Clone for CredentialState {
    fn clone(&self) -> Self {
        let size = self.block_size();
        let layout = layout(size);
        let fields = (**self).clone();
        // SAFETY: the new block gets the clone of the fields, then a copy of every byte
        // after them (the tail, the `Copy` entries and the id).
        unsafe {
            let block = alloc::alloc(layout);
            if block.is_null() {
                alloc::handle_alloc_error(layout)
            }
            block.cast::<Fields>().write(fields);
            let after = size_of::<Fields>();
            ptr::copy_nonoverlapping(self.base().add(after), block.add(after), size - after);
            CredentialState {
                head: NonNull::new_unchecked(block.cast()),
            }
        }
    }
}

impl Drop for CredentialState {
    fn drop(&mut self) {
        let size = self.block_size();
        // SAFETY: the fields are dropped once, then the block is freed with its layout.
        unsafe {
            ptr::drop_in_place(&mut (*self.head.as_ptr()).fields);
            alloc::dealloc(self.base(), layout(size));
        }
    }
}

/// Equal facts and lists; the id is not compared (a record read from a checkpoint has none
/// until the store takes it).
impl PartialEq for CredentialState {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
            && self.allowed_from() == other.allowed_from()
            && self.last_zone() == other.last_zone()
            && self.home() == other.home()
            && self.networks() == other.networks()
            && self.endpoints() == other.endpoints()
            && self.user_agents() == other.user_agents()
    }
}

impl std::fmt::Debug for CredentialState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialState")
            .field("id", &self.id())
            .field("fields", &**self)
            .field("allowed_from", &self.allowed_from())
            .field("last_zone", &self.last_zone())
            .field("home", &self.home())
            .field("networks", &self.networks())
            .field("endpoints", &self.endpoints())
            .field("user_agents", &self.user_agents())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_secs(second)
    }

    fn network(i: u32) -> Seen<Network> {
        Seen::new(Network::V4(i << 8), i, at(i64::from(i)))
    }

    fn symbol(i: usize) -> Seen<Symbol> {
        Seen::new(Symbol::from_index(i), i as u32, at(i as i64))
    }

    #[test]
    fn the_goals_shape_is_one_296_byte_block() {
        // BENCHMARKS.md, section 4: with glibc's 8 bytes, a 304-byte chunk.
        assert_eq!(size_of::<Fields>(), 96);
        assert_eq!(HEAD, 104);
        assert_eq!(size_of::<CredentialState>(), 8);
        let mut record = CredentialState::default();
        record.set_id("AKIAMEM0000000000001");
        for i in 0..4 {
            record.push_network(network(i));
        }
        for i in 0..8 {
            record.push_endpoint(symbol(i));
        }
        record.push_user_agent(symbol(100));
        assert_eq!(record.block_size(), 296);
    }

    #[test]
    fn lists_and_id_keep_their_entries_as_each_grows() {
        let mut record = CredentialState::with_fields(Fields {
            accesses: 7,
            ..Fields::default()
        });
        record.set_id("AKIA1");
        record.push_user_agent(symbol(50));
        record.push_endpoint(symbol(1));
        record.push_network(network(1));
        record.push_endpoint(symbol(2));
        record.push_network(network(2));
        record.push_user_agent(symbol(51));
        record.set_home(3);
        record.set_allowed_from(AllowedFrom::Learned);
        assert_eq!(record.networks(), &[network(1), network(2)]);
        assert_eq!(record.endpoints(), &[symbol(1), symbol(2)]);
        assert_eq!(record.user_agents(), &[symbol(50), symbol(51)]);
        assert_eq!(record.id(), "AKIA1");
        assert_eq!(record.accesses, 7);
        assert_eq!(
            (record.home(), record.allowed_from()),
            (3, AllowedFrom::Learned)
        );

        record.endpoints_mut()[1] = symbol(9);
        record.networks_mut()[0] = network(8);
        record.user_agents_mut()[0] = symbol(52);
        let copy = record.clone();
        assert_eq!(copy, record);
        assert_eq!(copy.id(), "AKIA1");
        assert_eq!(copy.endpoints(), &[symbol(1), symbol(9)]);
        assert_eq!(copy.networks(), &[network(8), network(2)]);
        assert_eq!(copy.user_agents(), &[symbol(52), symbol(51)]);

        record.set_lists(&[network(5)], &[], &[symbol(60), symbol(61), symbol(62)]);
        assert_eq!(record.networks(), &[network(5)]);
        assert!(record.endpoints().is_empty());
        assert_eq!(record.user_agents(), &[symbol(60), symbol(61), symbol(62)]);
        assert_eq!(record.id(), "AKIA1");
        assert_ne!(copy, record);
    }

    #[test]
    fn ids_of_any_length_are_kept_whole() {
        let long = "ghp_".repeat(100);
        for id in ["", "a", &"x".repeat(254), &"y".repeat(255), &long] {
            let mut record = CredentialState::default();
            record.push_endpoint(symbol(3));
            record.set_id(id);
            assert_eq!(record.id(), id);
            record.push_network(network(4));
            assert_eq!(record.id(), id);
            assert_eq!(record.endpoints(), &[symbol(3)]);
            record.set_id("short");
            assert_eq!(record.id(), "short");
            record.set_id(id);
            assert_eq!(record.clone().id(), id);
        }
    }

    #[derive(Debug, Clone)]
    enum Step {
        Network(u32),
        Endpoint(usize),
        Agent(usize),
        Id(String),
        Lists(Vec<u32>, Vec<usize>, Vec<usize>),
        Change(usize),
        Clone,
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            (0u32..1000).prop_map(Step::Network),
            (0usize..1000).prop_map(Step::Endpoint),
            (0usize..1000).prop_map(Step::Agent),
            "[a-z]{0,3}|[A-Z0-9]{20}|x{250,300}".prop_map(Step::Id),
            (
                prop::collection::vec(0u32..1000, 0..6),
                prop::collection::vec(0usize..1000, 0..6),
                prop::collection::vec(0usize..1000, 0..6),
            )
                .prop_map(|(n, e, a)| Step::Lists(n, e, a)),
            (0usize..100).prop_map(Step::Change),
            Just(Step::Clone),
        ]
    }

    proptest::proptest! {
        /// The block agrees with plain vectors and a string after any sequence of changes.
        #[test]
        fn the_block_holds_what_a_plain_model_holds(
            steps in proptest::collection::vec(step(), 0..40),
        ) {
            let mut record = CredentialState::default();
            let (mut networks, mut endpoints, mut agents) = (Vec::new(), Vec::new(), Vec::new());
            let mut id = String::new();
            for step in steps {
                match step {
                    Step::Network(i) => {
                        record.push_network(network(i));
                        networks.push(network(i));
                    }
                    Step::Endpoint(i) => {
                        record.push_endpoint(symbol(i));
                        endpoints.push(symbol(i));
                    }
                    Step::Agent(i) => {
                        record.push_user_agent(symbol(i));
                        agents.push(symbol(i));
                    }
                    Step::Id(new) => {
                        record.set_id(&new);
                        id = new;
                    }
                    Step::Lists(n, e, a) => {
                        networks = n.into_iter().map(network).collect();
                        endpoints = e.into_iter().map(symbol).collect();
                        agents = a.into_iter().map(symbol).collect();
                        record.set_lists(&networks, &endpoints, &agents);
                    }
                    Step::Change(i) => {
                        if let Some(slot) = record.networks_mut().get_mut(i % 7) {
                            *slot = network(i as u32);
                            networks[i % 7] = network(i as u32);
                        }
                        if let Some(slot) = record.user_agents_mut().get_mut(i % 5) {
                            *slot = symbol(i);
                            agents[i % 5] = symbol(i);
                        }
                        record.accesses = i as u32;
                    }
                    Step::Clone => record = record.clone(),
                }
                proptest::prop_assert_eq!(record.networks(), &networks[..]);
                proptest::prop_assert_eq!(record.endpoints(), &endpoints[..]);
                proptest::prop_assert_eq!(record.user_agents(), &agents[..]);
                proptest::prop_assert_eq!(record.id(), &id[..]);
                let long = if id.len() >= 255 { 4 } else { 0 };
                proptest::prop_assert_eq!(
                    record.block_size(),
                    HEAD + NETWORK * networks.len()
                        + SYMBOL * (endpoints.len() + agents.len())
                        + long
                        + id.len()
                );
            }
        }
    }

    #[test]
    fn overwriting_the_fields_leaves_the_block_intact() {
        let mut record = CredentialState::default();
        record.set_id("AKIA2");
        record.push_network(network(1));
        let other = CredentialState::default();
        *record = (*other).clone();
        assert_eq!(record.networks(), &[network(1)]);
        assert_eq!(record.id(), "AKIA2");
    }
}
