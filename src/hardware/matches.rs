//! What a lookup in the module tables answers: a module and the table entry that chose it.

/// Where a resolved module came from (for `viver hw probe`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Match {
    pub module: String,
    /// The table entry that matched: an alias pattern, "module name", a legacy map line...
    pub why: String,
}
