//! `viver kit check-kernel CONFIG`: does a kernel .config have what VIVER needs
//! (kernel-patches/viver.config, embedded so the installed binary works anywhere)?

use super::error::{IoContext, KitError};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

pub const FRAGMENT: &str = include_str!("../../kernel-patches/viver.config");

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub option: String,
    /// true: must be `y`; false: `m` or `y`.
    pub builtin: bool,
    pub group: Option<String>,
    pub optional: bool,
    pub line: usize,
}

#[derive(Debug, Default)]
pub struct Report {
    pub missing: Vec<String>,
    pub warnings: Vec<String>,
    pub satisfied: usize,
}

pub fn parse_fragment(text: &str) -> Result<Vec<Requirement>, KitError> {
    let mut reqs = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (setting, comment) = match line.split_once('#') {
            Some((s, c)) => (s.trim(), c.trim()),
            None => (line, ""),
        };
        let (option, value) = setting
            .split_once('=')
            .ok_or_else(|| KitError::BadInput(format!("viver.config line {}: expected CONFIG_X=y|m, got {raw:?}", i + 1)))?;
        let builtin = match value {
            "y" => true,
            "m" => false,
            _ => return Err(KitError::BadInput(format!("viver.config line {}: value must be y or m, got {value:?}", i + 1))),
        };
        reqs.push(Requirement {
            option: option.to_string(),
            builtin,
            group: comment.strip_prefix("any-of:").map(|g| g.trim().to_string()),
            optional: comment == "optional",
            line: i + 1,
        });
    }
    Ok(reqs)
}

/// The options set in a .config (`CONFIG_X=value`; `# CONFIG_X is not set` is absent).
pub fn parse_config(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter(|l| l.starts_with("CONFIG_"))
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())))
        .collect()
}

fn holds(req: &Requirement, config: &HashMap<String, String>) -> bool {
    match config.get(&req.option).map(String::as_str) {
        Some("y") => true,
        Some("m") => !req.builtin,
        _ => false,
    }
}

fn describe(req: &Requirement, config: &HashMap<String, String>) -> String {
    let found = config.get(&req.option).map(|v| format!("={v}")).unwrap_or_else(|| " is not set".into());
    let want = if req.builtin { "=y (built in)" } else { "=m or =y" };
    format!("{}{found}, needs {want}", req.option)
}

pub fn check(config_text: &str, reqs: &[Requirement]) -> Report {
    let config = parse_config(config_text);
    let mut report = Report::default();
    let mut groups: BTreeMap<&str, Vec<&Requirement>> = BTreeMap::new();
    for req in reqs {
        if let Some(g) = &req.group {
            groups.entry(g.as_str()).or_default().push(req);
        } else if holds(req, &config) {
            report.satisfied += 1;
        } else if req.optional {
            report.warnings.push(describe(req, &config));
        } else {
            report.missing.push(describe(req, &config));
        }
    }
    for (group, members) in groups {
        if members.iter().any(|r| holds(r, &config)) {
            report.satisfied += 1;
        } else {
            let names: Vec<&str> = members.iter().map(|r| r.option.as_str()).collect();
            report.missing.push(format!("none of {} is set ({group}): at least one is needed", names.join(", ")));
        }
    }
    report
}

pub fn check_file(path: &Path) -> Result<Report, KitError> {
    let text = std::fs::read_to_string(path).at(path)?;
    if !text.lines().any(|l| l.starts_with("CONFIG_")) {
        return Err(KitError::BadInput(format!("{} is not a kernel .config (no CONFIG_ lines)", path.display())));
    }
    Ok(check(&text, &parse_fragment(FRAGMENT)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_fragment_parses() {
        let reqs = parse_fragment(FRAGMENT).unwrap();
        assert!(reqs.iter().any(|r| r.option == "CONFIG_DEVTMPFS" && r.builtin));
        assert!(reqs.iter().any(|r| r.option == "CONFIG_SQUASHFS_ZSTD" && r.group.is_some()));
    }

    #[test]
    fn module_satisfies_m_not_y_and_groups_need_one() {
        let reqs =
            parse_fragment("CONFIG_A=y\nCONFIG_B=m\nCONFIG_C=y # any-of: g\nCONFIG_D=y # any-of: g\nCONFIG_E=m # optional\n").unwrap();
        let r = check("CONFIG_A=m\nCONFIG_B=m\nCONFIG_D=y\n", &reqs);
        assert_eq!(r.missing, vec!["CONFIG_A=m, needs =y (built in)".to_string()]);
        assert_eq!(r.warnings.len(), 1);
        let r = check("CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\n", &reqs);
        assert_eq!(r.missing.len(), 1);
        assert!(r.missing[0].contains("CONFIG_C, CONFIG_D"));
    }

    #[test]
    fn malformed_fragment_names_the_line() {
        let e = parse_fragment("CONFIG_A=y\nCONFIG_B\n").unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
    }
}
