//! Integration tests: one test binary, one module per area, driving the real `credwatch`
//! binary the way a user does (arguments, stdin, files, exit codes) and comparing its output
//! with golden files under tests/golden/ (regenerate with `UPDATE_GOLDEN=1`).

mod util;

mod api;
mod archive;
mod bounds;
mod config;
mod demo;
mod formats;
mod fuzz;
mod kafka;
mod properties;
mod recovery;
mod replay;
mod respond;
mod rules;
mod secrets;
