//! credwatch: a streaming detector for misuse of API credentials.
//!
//! The modules follow the data flow, one direction:
//! `source` → `decode` → `zones` → `state` → `detect` → `alerts` (with `rules` configuring
//! detectors and `engine` wiring the stages), driven by `replay` for files and stdin and by
//! `demo` for the embedded synthetic day. See DESIGN.md in the shared folder and the README.

pub mod alerts;
pub mod api;
pub mod archive;
pub mod backtest;
pub mod checkpoint;
pub mod config;
pub mod dead_letter;
pub mod decode;
pub mod demo;
pub mod detect;
pub mod diagnostic;
pub mod engine;
pub mod event;
pub mod fuzzing;
pub mod patterns;
pub mod query;
pub mod redact;
pub mod replay;
pub mod respond;
pub mod rules;
pub mod run;
pub mod send;
pub mod source;
pub mod state;
mod text;
pub mod time;
pub mod zones;
