//! Empty on purpose: the programs live in the `loupe` binary target
//! (`src/main.rs`). This library exists so that the agent can list the crate as
//! a build dependency and be rebuilt when the probes change.
#![no_std]
