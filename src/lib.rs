//! credwatch: a streaming detector for misuse of API credentials.
//!
//! The modules follow the data flow, one direction:
//! `source` → `decode` → `zones` → `state` → `detect` → `alerts` (with `rules` configuring
//! detectors and `engine` wiring the stages), driven by `replay` for files and stdin and by
//! `demo` for the embedded synthetic day. See DESIGN.md in the shared folder and the README.

pub mod config;
pub mod decode;
pub mod detect;
pub mod diagnostic;
pub mod event;
pub mod state;
pub mod time;
pub mod zones;
pub mod alerts;
pub mod engine;
pub mod rules;
pub mod dead_letter;
pub mod replay;
pub mod source;
pub mod demo;
