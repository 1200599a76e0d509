//! The reporter handle: how ops tell the user what is happening without printing. `cli`
//! implements it (its printer); tests use [`Quiet`] or collect the lines.

use std::fmt;

use crate::engine::{self, Event, Recap};

/// Progress from an operation: informational lines, errors that do not stop it, the engine's
/// events, and the end of each engine run (the recap).
pub trait Reporter: engine::Reporter {
    /// An informational line (stderr in the CLI).
    fn info(&self, line: &str);
    /// An error that does not stop the operation (e.g. one host unreachable during `verify`).
    fn error(&self, message: &dyn fmt::Display);
    /// One engine run is over: show its recap.
    fn recap(&self, recap: &Recap);
}

/// A reporter that drops everything (tests, library use).
#[derive(Debug, Default)]
pub struct Quiet;

impl engine::Reporter for Quiet {
    fn event(&self, _: &Event) {}
}

impl Reporter for Quiet {
    fn info(&self, _: &str) {}
    fn error(&self, _: &dyn fmt::Display) {}
    fn recap(&self, _: &Recap) {}
}
