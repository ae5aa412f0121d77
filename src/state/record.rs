//! The memory layout of a credential's record: one allocation per credential.
//!
//! A store holds millions of records, so each is a single heap block, owned through one
//! pointer (the map's slot is 8 bytes):
//!
//! ```text
//! | Fields (80) | Tail (8) | expiry (8)? | lineage (4)? | rare (8)? |
//! | endpoints, then user agents: n × 8 | IPv4 networks: n × 8 | IPv6 networks: n × 10 | id |
//! ```
//!
//! [`Fields`] are the record's fixed-size facts, reached through `Deref` like a plain struct's
//! fields. [`Tail`] says which optional parts the block holds and how long its lists and id
//! are, behind methods: it describes the block, so safe code must not be able to overwrite it
//! (assigning a whole `Fields` through `DerefMut` leaves it alone). The optional parts take
//! room only in the records that have them: an expiry time, the lineage a baseline was
//! inherited from, and a pointer to what few credentials have (a leak report, a revocation,
//! novel uses). The lists hold packed [`Entry`] values (a key, a 16-bit count and a 16-bit
//! age: see `credential.rs`), an IPv4 /24 keyed by its 32 bits and an IPv6 /48 by its 48, so
//! that the common network costs 8 bytes; the credential id (its key in the store) comes
//! last. For a 20-byte AWS key id, 4 IPv4 networks, 8 endpoints and an agent the block is 212
//! bytes, a 224-byte glibc chunk (BENCHMARKS.md, section 4).
//!
//! Everything `unsafe` in the state module is in this file.

use std::alloc::{self, Layout};
use std::mem::{align_of, size_of};
use std::ops::{Deref, DerefMut};
use std::ptr::{self, NonNull};

use super::credential::{AllowedFrom, Entry, Fields, Rare};
use super::{Home, Symbol};
use crate::time::Timestamp;
use crate::zones::{Prefix48, ZoneId};

/// Which optional parts the block holds and the lengths of its variable parts, and the
/// record's partition.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Tail {
    home: Home,
    /// The optional parts held: [`EXPIRY`], [`LINEAGE`], [`RARE`].
    parts: u8,
    endpoints: u8,
    agents: u8,
    v4: u8,
    v6: u8,
    /// The id's length when below [`LONG_ID`]; at `LONG_ID`, the id area starts with its
    /// length as 4 bytes (unaligned, little-endian).
    id_len: u8,
}

/// An optional part: its bit in [`Tail::parts`] and its size. They follow the tail in this
/// order, each only when held, read and written unaligned.
#[derive(Clone, Copy)]
struct Part {
    bit: u8,
    size: usize,
}

/// When the credential expires: its microseconds, as an `i64`.
const EXPIRY: Part = Part { bit: 1, size: 8 };
/// The lineage its baseline was inherited from: a [`Symbol`].
const LINEAGE: Part = Part { bit: 2, size: 4 };
/// What few credentials have: a `*mut Rare` the record owns (a `Box`).
const RARE: Part = Part {
    bit: 4,
    size: size_of::<*mut Rare>(),
};
const PARTS_IN_ORDER: [Part; 3] = [EXPIRY, LINEAGE, RARE];

/// The bytes the parts take, for each set of them held (indexed by [`Tail::parts`]), so that
/// finding the lists on the per-event path is one load.
const HELD_SIZE: [usize; 8] = {
    let mut sizes = [0; 8];
    let mut held = 0;
    while held < sizes.len() {
        let mut i = 0;
        while i < PARTS_IN_ORDER.len() {
            if held as u8 & PARTS_IN_ORDER[i].bit != 0 {
                sizes[held] += PARTS_IN_ORDER[i].size;
            }
            i += 1;
        }
        held += 1;
    }
    sizes
};

/// An id of this many bytes or more keeps its length in its own area.
const LONG_ID: u8 = u8::MAX;

/// An endpoint's or user agent's entry.
pub(super) type SymbolEntry = Entry<Symbol>;
/// An IPv4 /24's entry, keyed by the network's 32 bits (the last byte zero).
pub(super) type V4Entry = Entry<u32>;
/// An IPv6 /48's entry.
pub(super) type V6Entry = Entry<Prefix48>;

const TAIL: usize = size_of::<Fields>();
/// Where the optional parts start; the lists follow them.
const PARTS: usize = TAIL + size_of::<Tail>();
const SYMBOL: usize = size_of::<SymbolEntry>();
const V4: usize = size_of::<V4Entry>();
const V6: usize = size_of::<V6Entry>();
const ALIGN: usize = align_of::<Fields>();

// The parts follow each other: each must leave the next one aligned.
const _: () = assert!(TAIL.is_multiple_of(align_of::<Tail>()));
const _: () = assert!(PARTS.is_multiple_of(align_of::<SymbolEntry>()));
const _: () = assert!(EXPIRY.size.is_multiple_of(align_of::<SymbolEntry>()));
const _: () = assert!(LINEAGE.size.is_multiple_of(align_of::<SymbolEntry>()));
const _: () = assert!(RARE.size.is_multiple_of(align_of::<SymbolEntry>()));
const _: () = assert!(size_of::<Symbol>() == LINEAGE.size);
const _: () = assert!(SYMBOL.is_multiple_of(align_of::<V4Entry>()));
const _: () = assert!(V4.is_multiple_of(align_of::<V6Entry>()));
const _: () = assert!(ALIGN >= align_of::<Tail>() && ALIGN >= align_of::<SymbolEntry>());

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, ALIGN).expect("a record's layout")
}

/// What credwatch knows about one credential: its [`Fields`] (through `Deref`), its lists of
/// networks, endpoints and user agents, and its id, in one allocation (see the module
/// documentation).
pub struct CredentialState {
    block: NonNull<u8>,
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

/// Reads `len` entries of `T` at byte `at` of the block.
///
/// # Safety
/// The block holds `len` initialized `T`s at `at`, aligned for `T`.
unsafe fn slice<'a, T>(block: *mut u8, at: usize, len: usize) -> &'a [T] {
    unsafe { std::slice::from_raw_parts(block.add(at).cast(), len) }
}

/// As [`slice`], mutable.
///
/// # Safety
/// As [`slice`], and nothing else reads or writes those entries meanwhile.
unsafe fn slice_mut<'a, T>(block: *mut u8, at: usize, len: usize) -> &'a mut [T] {
    unsafe { std::slice::from_raw_parts_mut(block.add(at).cast(), len) }
}

impl CredentialState {
    /// A record holding `fields`, with no lists and an empty id.
    pub fn with_fields(fields: Fields) -> Self {
        let layout = layout(PARTS);
        // SAFETY: the layout has a non-zero size; the fields and the tail are written before
        // use, each at its aligned offset.
        unsafe {
            let Some(block) = NonNull::new(alloc::alloc(layout)) else {
                alloc::handle_alloc_error(layout)
            };
            block.as_ptr().cast::<Fields>().write(fields);
            block
                .as_ptr()
                .add(TAIL)
                .cast::<Tail>()
                .write(Tail::default());
            CredentialState { block }
        }
    }

    fn base(&self) -> *mut u8 {
        self.block.as_ptr()
    }

    fn tail(&self) -> &Tail {
        // SAFETY: the tail is initialized for the record's life.
        unsafe { &*self.base().add(TAIL).cast::<Tail>() }
    }

    fn tail_mut(&mut self) -> &mut Tail {
        // SAFETY: as `tail`, and `&mut self` is the only access.
        unsafe { &mut *self.base().add(TAIL).cast::<Tail>() }
    }

    /// Where `part` is, or would be: after the tail and the parts before it.
    fn part_at(&self, part: Part) -> usize {
        PARTS + HELD_SIZE[usize::from(self.tail().parts & (part.bit - 1))]
    }

    /// Where the lists start: after the parts held.
    fn lists_at(&self) -> usize {
        PARTS + HELD_SIZE[usize::from(self.tail().parts)]
    }

    fn holds(&self, part: Part) -> bool {
        self.tail().parts & part.bit != 0
    }

    /// The part's value, if held.
    ///
    /// # Safety
    /// `T` is the part's type (see the constants), of its size.
    unsafe fn part<T: Copy>(&self, part: Part) -> Option<T> {
        debug_assert_eq!(size_of::<T>(), part.size);
        // SAFETY: a held part's bytes are a `T`, written by `set_part`.
        self.holds(part)
            .then(|| unsafe { ptr::read_unaligned(self.base().add(self.part_at(part)).cast()) })
    }

    /// Holds `value` in the part, or drops the part for `None`, making or freeing its room.
    ///
    /// # Safety
    /// As [`part`](Self::part); a part that owns something must be released by the caller
    /// before it is overwritten or dropped.
    unsafe fn set_part<T: Copy>(&mut self, part: Part, value: Option<T>) {
        debug_assert_eq!(size_of::<T>(), part.size);
        let at = self.part_at(part);
        match (self.holds(part), value) {
            (false, None) => {}
            (true, None) => {
                self.close(at, part.size);
                self.tail_mut().parts &= !part.bit;
            }
            (held, Some(value)) => {
                if !held {
                    self.open(at, part.size);
                    self.tail_mut().parts |= part.bit;
                }
                // SAFETY: the part's room is in the block.
                unsafe { ptr::write_unaligned(self.base().add(at).cast(), value) };
            }
        }
    }

    /// When the credential expires (from its issuance).
    pub fn expires_at(&self) -> Option<Timestamp> {
        // SAFETY: the expiry part is an `i64`.
        unsafe { self.part::<i64>(EXPIRY) }.map(Timestamp::from_micros)
    }

    pub fn set_expires_at(&mut self, at: Option<Timestamp>) {
        // SAFETY: as `expires_at`.
        unsafe { self.set_part(EXPIRY, at.map(Timestamp::micros)) }
    }

    /// The lineage whose baseline this credential started from at issuance; such a credential
    /// is armed from its first use.
    pub fn inherited_from(&self) -> Option<Symbol> {
        // SAFETY: the lineage part is a `Symbol`.
        unsafe { self.part::<Symbol>(LINEAGE) }
    }

    pub fn set_inherited_from(&mut self, lineage: Option<Symbol>) {
        // SAFETY: as `inherited_from`.
        unsafe { self.set_part(LINEAGE, lineage) }
    }

    /// What few credentials have, if this one has any.
    pub(super) fn rare(&self) -> Option<&Rare> {
        // SAFETY: the rare part is a pointer from `Box::into_raw`, owned by the record for as
        // long as the part is held.
        unsafe { self.part::<*mut Rare>(RARE).map(|rare| &*rare) }
    }

    /// Changes the rare part through `change`, making it first if needed and dropping it if
    /// the change leaves it empty.
    pub(super) fn change_rare(&mut self, change: impl FnOnce(&mut Rare)) {
        // SAFETY: as `rare`; the pointer is freed exactly once, when the part is dropped.
        unsafe {
            let rare = match self.part::<*mut Rare>(RARE) {
                Some(rare) => rare,
                None => {
                    let rare = Box::into_raw(Box::<Rare>::default());
                    self.set_part(RARE, Some(rare));
                    rare
                }
            };
            change(&mut *rare);
            if *rare == Rare::default() {
                self.set_part::<*mut Rare>(RARE, None);
                drop(Box::from_raw(rare));
            }
        }
    }

    fn symbol_count(&self) -> usize {
        usize::from(self.tail().endpoints) + usize::from(self.tail().agents)
    }

    fn v4_at(&self) -> usize {
        self.lists_at() + SYMBOL * self.symbol_count()
    }

    fn v6_at(&self) -> usize {
        self.v4_at() + V4 * usize::from(self.tail().v4)
    }

    fn id_at(&self) -> usize {
        self.v6_at() + V6 * usize::from(self.tail().v6)
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

    /// Whether the record's id is `id`: how the store finds a record (ids are short, so
    /// compared inline, see [`crate::text::same`]).
    pub(super) fn has_id(&self, id: &str) -> bool {
        crate::text::same(self.id(), id)
    }

    /// The endpoints' entries, then the user agents'.
    fn symbol_entries(&self) -> &[SymbolEntry] {
        // SAFETY: the symbol entries start after the parts, aligned (see the asserts above).
        unsafe { slice(self.base(), self.lists_at(), self.symbol_count()) }
    }

    /// The endpoints' entries, then the user agents'.
    pub(super) fn symbol_entries_mut(&mut self) -> &mut [SymbolEntry] {
        let (at, len) = (self.lists_at(), self.symbol_count());
        // SAFETY: as `symbol_entries`, with `&mut self` the only access.
        unsafe { slice_mut(self.base(), at, len) }
    }

    /// The endpoints' entries.
    pub(super) fn endpoint_entries(&self) -> &[SymbolEntry] {
        &self.symbol_entries()[..usize::from(self.tail().endpoints)]
    }

    pub(super) fn endpoint_entries_mut(&mut self) -> &mut [SymbolEntry] {
        let endpoints = usize::from(self.tail().endpoints);
        &mut self.symbol_entries_mut()[..endpoints]
    }

    /// The user agents' entries.
    pub(super) fn user_agent_entries(&self) -> &[SymbolEntry] {
        &self.symbol_entries()[usize::from(self.tail().endpoints)..]
    }

    pub(super) fn user_agent_entries_mut(&mut self) -> &mut [SymbolEntry] {
        let endpoints = usize::from(self.tail().endpoints);
        &mut self.symbol_entries_mut()[endpoints..]
    }

    /// The IPv4 networks' entries.
    pub(super) fn v4_entries(&self) -> &[V4Entry] {
        // SAFETY: the IPv4 entries follow the symbols, aligned (see the asserts above).
        unsafe { slice(self.base(), self.v4_at(), usize::from(self.tail().v4)) }
    }

    pub(super) fn v4_entries_mut(&mut self) -> &mut [V4Entry] {
        let (at, len) = (self.v4_at(), usize::from(self.tail().v4));
        // SAFETY: as `v4_entries`, with `&mut self` the only access.
        unsafe { slice_mut(self.base(), at, len) }
    }

    /// The IPv6 networks' entries.
    pub(super) fn v6_entries(&self) -> &[V6Entry] {
        // SAFETY: the IPv6 entries follow the IPv4 ones, aligned (see the asserts above).
        unsafe { slice(self.base(), self.v6_at(), usize::from(self.tail().v6)) }
    }

    pub(super) fn v6_entries_mut(&mut self) -> &mut [V6Entry] {
        let (at, len) = (self.v6_at(), usize::from(self.tail().v6));
        // SAFETY: as `v6_entries`, with `&mut self` the only access.
        unsafe { slice_mut(self.base(), at, len) }
    }

    /// Where the allowed zones come from.
    pub fn allowed_from(&self) -> AllowedFrom {
        self.allowed_from
    }

    pub fn set_allowed_from(&mut self, from: AllowedFrom) {
        self.allowed_from = from;
    }

    /// The input partition whose event touched the record last ([`Home`]).
    pub fn home(&self) -> Home {
        self.tail().home
    }

    pub fn set_home(&mut self, home: Home) {
        self.tail_mut().home = home;
    }

    pub(super) fn last_zone_byte(&self) -> ZoneId {
        self.last_zone
    }

    pub(super) fn set_last_zone_byte(&mut self, zone: ZoneId) {
        self.last_zone = zone;
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
            self.block = NonNull::new_unchecked(block);
        }
    }

    /// Removes `by` bytes at byte `at` of the block, moving what follows back.
    fn close(&mut self, at: usize, by: usize) {
        let old = self.block_size();
        debug_assert!(at + by <= old && at >= PARTS);
        let new = old - by;
        // SAFETY: the bytes after the closed range move down inside the block, which then
        // shrinks to `new` (at least PARTS) bytes.
        unsafe {
            ptr::copy(self.base().add(at + by), self.base().add(at), old - at - by);
            let block = alloc::realloc(self.base(), layout(old), new);
            if block.is_null() {
                alloc::handle_alloc_error(layout(new))
            }
            self.block = NonNull::new_unchecked(block);
        }
    }

    /// Appends `entry` to a list that ends at byte `at` and whose length `len` picks out of
    /// the tail (at most 255 entries: `what` names them in the panic).
    ///
    /// # Safety
    /// The list holds `T`s, so `at` is aligned for one.
    unsafe fn append<T>(&mut self, at: usize, entry: T, len: fn(&mut Tail) -> &mut u8, what: &str) {
        assert!(*len(self.tail_mut()) < u8::MAX, "at most 255 {what}");
        self.open(at, size_of::<T>());
        // SAFETY: `open` made the room, aligned by the caller's promise.
        unsafe { self.base().add(at).cast::<T>().write(entry) };
        *len(self.tail_mut()) += 1;
    }

    /// Removes the `index`-th `T` of a list that starts at byte `at` and whose length `len`
    /// picks out of the tail.
    fn remove<T>(&mut self, at: usize, index: usize, len: fn(&mut Tail) -> &mut u8) {
        assert!(index < usize::from(*len(self.tail_mut())));
        self.close(at + size_of::<T>() * index, size_of::<T>());
        *len(self.tail_mut()) -= 1;
    }

    /// Appends an endpoint (at most 255).
    pub(super) fn push_endpoint(&mut self, entry: SymbolEntry) {
        let at = self.lists_at() + SYMBOL * usize::from(self.tail().endpoints);
        // SAFETY: the end of the endpoints, among symbol entries.
        unsafe { self.append(at, entry, |tail| &mut tail.endpoints, "endpoints") }
    }

    /// Appends a user agent (at most 255).
    pub(super) fn push_user_agent(&mut self, entry: SymbolEntry) {
        let at = self.v4_at();
        // SAFETY: the end of the symbol entries.
        unsafe { self.append(at, entry, |tail| &mut tail.agents, "user agents") }
    }

    /// Appends an IPv4 network (at most 255).
    pub(super) fn push_v4(&mut self, entry: V4Entry) {
        let at = self.v6_at();
        // SAFETY: the end of the IPv4 entries.
        unsafe { self.append(at, entry, |tail| &mut tail.v4, "IPv4 networks") }
    }

    /// Appends an IPv6 network (at most 255).
    pub(super) fn push_v6(&mut self, entry: V6Entry) {
        let at = self.id_at();
        // SAFETY: the end of the IPv6 entries.
        unsafe { self.append(at, entry, |tail| &mut tail.v6, "IPv6 networks") }
    }

    /// Removes the `index`-th IPv4 network.
    pub(super) fn remove_v4(&mut self, index: usize) {
        let at = self.v4_at();
        self.remove::<V4Entry>(at, index, |tail| &mut tail.v4);
    }

    /// Removes the `index`-th IPv6 network.
    pub(super) fn remove_v6(&mut self, index: usize) {
        let at = self.v6_at();
        self.remove::<V6Entry>(at, index, |tail| &mut tail.v6);
    }

    /// Replaces the lists (each at most 255 entries long: longer lists are cut).
    pub(super) fn set_entries(
        &mut self,
        endpoints: &[SymbolEntry],
        user_agents: &[SymbolEntry],
        v4: &[V4Entry],
        v6: &[V6Entry],
    ) {
        let cut = |len: usize| len.min(usize::from(u8::MAX));
        let endpoints = &endpoints[..cut(endpoints.len())];
        let user_agents = &user_agents[..cut(user_agents.len())];
        let v4 = &v4[..cut(v4.len())];
        let v6 = &v6[..cut(v6.len())];
        // Drop the old lists, keeping the id right after the parts.
        let lists_at = self.lists_at();
        self.close(lists_at, self.id_at() - lists_at);
        {
            let tail = self.tail_mut();
            tail.endpoints = 0;
            tail.agents = 0;
            tail.v4 = 0;
            tail.v6 = 0;
        }
        let bytes = SYMBOL * (endpoints.len() + user_agents.len()) + V4 * v4.len() + V6 * v6.len();
        self.open(lists_at, bytes);
        // SAFETY: `open` made room for the entries right after the parts, each list aligned.
        unsafe {
            let symbols_at = self.base().add(lists_at).cast::<SymbolEntry>();
            ptr::copy_nonoverlapping(endpoints.as_ptr(), symbols_at, endpoints.len());
            let agents_at = symbols_at.add(endpoints.len());
            ptr::copy_nonoverlapping(user_agents.as_ptr(), agents_at, user_agents.len());
            let v4_at = agents_at.add(user_agents.len()).cast::<V4Entry>();
            ptr::copy_nonoverlapping(v4.as_ptr(), v4_at, v4.len());
            let v6_at = v4_at.add(v4.len()).cast::<V6Entry>();
            ptr::copy_nonoverlapping(v6.as_ptr(), v6_at, v6.len());
        }
        let tail = self.tail_mut();
        tail.endpoints = endpoints.len() as u8;
        tail.agents = user_agents.len() as u8;
        tail.v4 = v4.len() as u8;
        tail.v6 = v6.len() as u8;
    }

    /// Sets the record's id (its key in the store).
    pub(super) fn set_id(&mut self, id: &str) {
        if self.has_id(id) {
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
        // SAFETY: the fields are initialized for the record's life, at the block's start.
        unsafe { &*self.base().cast::<Fields>() }
    }
}

impl DerefMut for CredentialState {
    fn deref_mut(&mut self) -> &mut Fields {
        // SAFETY: as `deref`, with `&mut self` the only access.
        unsafe { &mut *self.base().cast::<Fields>() }
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
            ptr::copy_nonoverlapping(self.base().add(TAIL), block.add(TAIL), size - TAIL);
            let mut clone = CredentialState {
                block: NonNull::new_unchecked(block),
            };
            // The copied pointer is the original's: the clone gets a rare part of its own.
            if let Some(rare) = self.rare() {
                clone.set_part(RARE, Some(Box::into_raw(Box::new(rare.clone()))));
            }
            clone
        }
    }
}

impl Drop for CredentialState {
    fn drop(&mut self) {
        let size = self.block_size();
        // SAFETY: the rare part and the fields are dropped once, then the block is freed with
        // its layout.
        unsafe {
            if let Some(rare) = self.part::<*mut Rare>(RARE) {
                drop(Box::from_raw(rare));
            }
            ptr::drop_in_place(self.base().cast::<Fields>());
            alloc::dealloc(self.base(), layout(size));
        }
    }
}

/// Equal facts and lists; the id is not compared (a record read from a checkpoint has none
/// until the store takes it).
impl PartialEq for CredentialState {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
            && self.home() == other.home()
            && self.expires_at() == other.expires_at()
            && self.inherited_from() == other.inherited_from()
            && self.rare() == other.rare()
            && self.endpoint_entries() == other.endpoint_entries()
            && self.user_agent_entries() == other.user_agent_entries()
            && self.v4_entries() == other.v4_entries()
            && self.v6_entries() == other.v6_entries()
    }
}

impl std::fmt::Debug for CredentialState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialState")
            .field("id", &self.id())
            .field("fields", &**self)
            .field("home", &self.home())
            .field("expires_at", &self.expires_at())
            .field("inherited_from", &self.inherited_from())
            .field("rare", &self.rare())
            .field("networks", &self.networks().collect::<Vec<_>>())
            .field("endpoints", &self.endpoints().collect::<Vec<_>>())
            .field("user_agents", &self.user_agents().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(i: u32) -> V4Entry {
        Entry::new(i << 8, i as u16)
    }

    fn v6(i: u64) -> V6Entry {
        Entry::new(Prefix48::from_bits(0x2001_0db8_0000 + i), i as u16)
    }

    fn symbol(i: usize) -> SymbolEntry {
        Entry::new(Symbol::from_index(i), i as u16)
    }

    #[test]
    fn the_goals_shape_is_one_212_byte_block() {
        // BENCHMARKS.md, section 4: with glibc's 8 bytes, a 224-byte chunk.
        assert_eq!(size_of::<Fields>(), 80);
        assert_eq!(PARTS, 88);
        assert_eq!((SYMBOL, V4, V6), (8, 8, 10));
        assert_eq!(size_of::<CredentialState>(), 8);
        let mut record = CredentialState::default();
        record.set_id("AKIAMEM0000000000001");
        for i in 0..4 {
            record.push_v4(v4(i));
        }
        for i in 0..8 {
            record.push_endpoint(symbol(i));
        }
        record.push_user_agent(symbol(100));
        assert_eq!(record.block_size(), 212);
        // An IPv6 /48 takes 10 bytes.
        record.push_v6(v6(1));
        assert_eq!(record.block_size(), 222);
    }

    #[test]
    fn lists_and_id_keep_their_entries_as_each_grows() {
        let mut record = CredentialState::with_fields(Fields {
            accesses: 7,
            ..Fields::default()
        });
        record.set_id("AKIA1");
        record.push_user_agent(symbol(50));
        record.push_v6(v6(9));
        record.push_endpoint(symbol(1));
        record.push_v4(v4(1));
        record.push_endpoint(symbol(2));
        record.push_v4(v4(2));
        record.push_user_agent(symbol(51));
        record.push_v6(v6(8));
        record.set_home(3);
        record.set_allowed_from(AllowedFrom::Learned);
        assert_eq!(record.v4_entries(), &[v4(1), v4(2)]);
        assert_eq!(record.v6_entries(), &[v6(9), v6(8)]);
        assert_eq!(record.endpoint_entries(), &[symbol(1), symbol(2)]);
        assert_eq!(record.user_agent_entries(), &[symbol(50), symbol(51)]);
        assert_eq!(record.id(), "AKIA1");
        assert_eq!(record.accesses, 7);
        assert_eq!(
            (record.home(), record.allowed_from()),
            (3, AllowedFrom::Learned)
        );

        record.endpoint_entries_mut()[1] = symbol(9);
        record.v4_entries_mut()[0] = v4(8);
        record.v6_entries_mut()[1] = v6(7);
        record.user_agent_entries_mut()[0] = symbol(52);
        let copy = record.clone();
        assert_eq!(copy, record);
        assert_eq!(copy.id(), "AKIA1");
        assert_eq!(copy.endpoint_entries(), &[symbol(1), symbol(9)]);
        assert_eq!(copy.v4_entries(), &[v4(8), v4(2)]);
        assert_eq!(copy.v6_entries(), &[v6(9), v6(7)]);
        assert_eq!(copy.user_agent_entries(), &[symbol(52), symbol(51)]);

        record.remove_v4(0);
        record.remove_v6(1);
        assert_eq!(record.v4_entries(), &[v4(2)]);
        assert_eq!(record.v6_entries(), &[v6(9)]);
        assert_eq!(record.id(), "AKIA1");

        record.set_entries(&[], &[symbol(60), symbol(61), symbol(62)], &[v4(5)], &[]);
        assert_eq!(record.v4_entries(), &[v4(5)]);
        assert!(record.v6_entries().is_empty());
        assert!(record.endpoint_entries().is_empty());
        assert_eq!(
            record.user_agent_entries(),
            &[symbol(60), symbol(61), symbol(62)]
        );
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
            record.push_v4(v4(4));
            record.push_v6(v6(4));
            assert_eq!(record.id(), id);
            assert_eq!(record.endpoint_entries(), &[symbol(3)]);
            record.set_id("short");
            assert_eq!(record.id(), "short");
            record.set_id(id);
            assert_eq!(record.clone().id(), id);
        }
    }

    #[derive(Debug, Clone)]
    enum Step {
        V4(u32),
        V6(u64),
        Endpoint(usize),
        Agent(usize),
        RemoveV4(usize),
        RemoveV6(usize),
        Id(String),
        Lists(Vec<usize>, Vec<usize>, Vec<u32>, Vec<u64>),
        Change(usize),
        Expiry(Option<i64>),
        Lineage(Option<usize>),
        Revoked(Option<i64>),
        Clone,
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        let list = || prop::collection::vec(0usize..1000, 0..6);
        prop_oneof![
            (0u32..1000).prop_map(Step::V4),
            (0u64..1000).prop_map(Step::V6),
            (0usize..1000).prop_map(Step::Endpoint),
            (0usize..1000).prop_map(Step::Agent),
            (0usize..8).prop_map(Step::RemoveV4),
            (0usize..8).prop_map(Step::RemoveV6),
            "[a-z]{0,3}|[A-Z0-9]{20}|x{250,300}".prop_map(Step::Id),
            (
                list(),
                list(),
                prop::collection::vec(0u32..1000, 0..6),
                prop::collection::vec(0u64..1000, 0..6),
            )
                .prop_map(|(e, a, n4, n6)| Step::Lists(e, a, n4, n6)),
            (0usize..100).prop_map(Step::Change),
            proptest::option::of(any::<i64>()).prop_map(Step::Expiry),
            proptest::option::of(0usize..1000).prop_map(Step::Lineage),
            proptest::option::of(any::<i64>()).prop_map(Step::Revoked),
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
            let (mut endpoints, mut agents) = (Vec::new(), Vec::new());
            let (mut v4s, mut v6s) = (Vec::new(), Vec::new());
            let mut id = String::new();
            let (mut expiry, mut lineage, mut revoked) = (None, None, None);
            for step in steps {
                match step {
                    Step::V4(i) => {
                        record.push_v4(v4(i));
                        v4s.push(v4(i));
                    }
                    Step::V6(i) => {
                        record.push_v6(v6(i));
                        v6s.push(v6(i));
                    }
                    Step::Endpoint(i) => {
                        record.push_endpoint(symbol(i));
                        endpoints.push(symbol(i));
                    }
                    Step::Agent(i) => {
                        record.push_user_agent(symbol(i));
                        agents.push(symbol(i));
                    }
                    Step::RemoveV4(i) => {
                        if i < v4s.len() {
                            record.remove_v4(i);
                            v4s.remove(i);
                        }
                    }
                    Step::RemoveV6(i) => {
                        if i < v6s.len() {
                            record.remove_v6(i);
                            v6s.remove(i);
                        }
                    }
                    Step::Id(new) => {
                        record.set_id(&new);
                        id = new;
                    }
                    Step::Lists(e, a, n4, n6) => {
                        endpoints = e.into_iter().map(symbol).collect();
                        agents = a.into_iter().map(symbol).collect();
                        v4s = n4.into_iter().map(v4).collect();
                        v6s = n6.into_iter().map(v6).collect();
                        record.set_entries(&endpoints, &agents, &v4s, &v6s);
                    }
                    Step::Change(i) => {
                        if let Some(slot) = record.v6_entries_mut().get_mut(i % 7) {
                            *slot = v6(i as u64);
                            v6s[i % 7] = v6(i as u64);
                        }
                        if let Some(slot) = record.user_agent_entries_mut().get_mut(i % 5) {
                            *slot = symbol(i);
                            agents[i % 5] = symbol(i);
                        }
                        record.accesses = i as u32;
                    }
                    Step::Expiry(at) => {
                        expiry = at.map(Timestamp::from_micros);
                        record.set_expires_at(expiry);
                    }
                    Step::Lineage(index) => {
                        lineage = index.map(Symbol::from_index);
                        record.set_inherited_from(lineage);
                    }
                    Step::Revoked(at) => {
                        revoked = at.map(Timestamp::from_micros);
                        record.set_revoked_at(revoked);
                    }
                    Step::Clone => record = record.clone(),
                }
                proptest::prop_assert_eq!(record.expires_at(), expiry);
                proptest::prop_assert_eq!(record.inherited_from(), lineage);
                proptest::prop_assert_eq!(record.revoked_at(), revoked);
                proptest::prop_assert_eq!(record.v4_entries(), &v4s[..]);
                proptest::prop_assert_eq!(record.v6_entries(), &v6s[..]);
                proptest::prop_assert_eq!(record.endpoint_entries(), &endpoints[..]);
                proptest::prop_assert_eq!(record.user_agent_entries(), &agents[..]);
                proptest::prop_assert_eq!(record.id(), &id[..]);
                let long = if id.len() >= 255 { 4 } else { 0 };
                let parts = 8 * usize::from(expiry.is_some())
                    + 4 * usize::from(lineage.is_some())
                    + 8 * usize::from(revoked.is_some());
                proptest::prop_assert_eq!(
                    record.block_size(),
                    PARTS
                        + parts
                        + SYMBOL * (endpoints.len() + agents.len())
                        + V4 * v4s.len()
                        + V6 * v6s.len()
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
        record.push_v4(v4(1));
        let other = CredentialState::default();
        *record = (*other).clone();
        assert_eq!(record.v4_entries(), &[v4(1)]);
        assert_eq!(record.id(), "AKIA2");
    }
}
