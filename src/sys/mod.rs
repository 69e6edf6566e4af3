//! Thin, documented wrappers around kernel interfaces that nix does not cover.
