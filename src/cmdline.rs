//! The kernel command line, split the way the kernel splits it: the one parser PID 1's
//! settings, the hardware detection and the `modprobe` personality all read it with.
//!
//! `/proc/cmdline` is one line of space-separated words; a double-quoted stretch keeps its
//! spaces (`viver.role="web server"`), the quotes themselves are dropped, and everything
//! after a lone `--` belongs to init. The line is bytes: [`Cmdline::from_bytes`] decodes
//! them lossily and says which words were not UTF-8, so one bad byte costs one word, not
//! every setting. Apart from the module options the kernel leaves to modprobe
//! ([`Cmdline::module_options`]), nothing here knows what a parameter means: that is
//! `boot::settings`'s job, so this stays a small, fuzzable tokenizer.

use std::collections::BTreeMap;

/// One `key` or `key=value` word of the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub key: String,
    pub value: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cmdline {
    pub params: Vec<Param>,
    /// Words after `--`: passed to the real init as its arguments.
    pub init_args: Vec<String>,
}

impl Cmdline {
    pub fn parse(line: &str) -> Cmdline {
        let mut cmdline = Cmdline::default();
        let mut after_dashes = false;
        for word in split_words(line) {
            if after_dashes {
                cmdline.init_args.push(word);
            } else if word == "--" {
                after_dashes = true;
            } else {
                cmdline.params.push(match word.split_once('=') {
                    Some((key, value)) => Param { key: key.to_string(), value: Some(value.to_string()) },
                    None => Param { key: word, value: None },
                });
            }
        }
        cmdline
    }

    /// The last value given for `key` (the kernel's rule: a later word overrides).
    pub fn last(&self, key: &str) -> Option<&Param> {
        self.params.iter().rev().find(|p| p.key == key)
    }
}

/// Kernel-style word splitting: whitespace separates, `"` toggles quoting anywhere in a
/// word and is removed. An unterminated quote runs to the end of the line, as in the kernel.
fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            // A NUL cannot be passed on to anything that takes C strings (exec, mount).
            '\0' => {}
            c => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(current);
    }
    words
}

/// What a kernel command line says about modules, the way modprobe read it: the
/// blacklist, the modules to load anyway, and `module.param=value` words per module.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModuleOptions {
    /// `modprobe.blacklist=a,b` and `rd.driver.blacklist=a,b` (names with `_`).
    pub blacklist: Vec<String>,
    /// `viver.modules=a,b` and `rd.driver.pre=a,b`, as given (names or aliases).
    pub force_load: Vec<String>,
    /// module name (with `_`) -> "p1=v1 p2=v2".
    pub params: BTreeMap<String, String>,
}

/// Command-line prefixes that are never module parameters.
pub const NOT_MODULE_PREFIXES: &[&str] = &["viver", "rd", "systemd", "udev", "modprobe", "console", "BOOT_IMAGE"];

/// `a,b,c` -> module names with `_` (kmod treats `-` and `_` alike).
pub fn module_list(value: &str) -> Vec<String> {
    value.split(',').map(|m| m.trim().replace('-', "_")).filter(|m| !m.is_empty()).collect()
}

/// A `module.param[=value]` word as (module with `_`, `param=value` as the module's own
/// parser takes it: a value with spaces quoted again). None for words that are no module
/// parameter (no dot, a prefix of [`NOT_MODULE_PREFIXES`], a path).
pub fn module_param(key: &str, value: Option<&str>) -> Option<(String, String)> {
    let (module, param) = key.split_once('.')?;
    if module.is_empty() || param.is_empty() || NOT_MODULE_PREFIXES.contains(&module) || module.contains('/') {
        return None;
    }
    let word = match value {
        Some(v) if v.contains(' ') => format!("{param}=\"{v}\""),
        Some(v) => format!("{param}={v}"),
        None => param.to_string(),
    };
    Some((module.replace('-', "_"), word))
}

/// Adds `word` to the parameters of `module` in `params`.
pub fn push_param(params: &mut BTreeMap<String, String>, module: String, word: &str) {
    let entry = params.entry(module).or_default();
    if !entry.is_empty() {
        entry.push(' ');
    }
    entry.push_str(word);
}

impl Cmdline {
    /// Decodes `/proc/cmdline`'s bytes: invalid UTF-8 becomes U+FFFD in the words that
    /// hold it, and each such word is named in the returned problems (the boot report
    /// shows them); every other word is read as it is.
    pub fn from_bytes(bytes: &[u8]) -> (Cmdline, Vec<String>) {
        let line = String::from_utf8_lossy(bytes);
        let mut problems = Vec::new();
        if std::str::from_utf8(bytes).is_err() {
            let mut offset = 0;
            for raw in bytes.split(|b| b.is_ascii_whitespace()) {
                if !raw.is_empty() && std::str::from_utf8(raw).is_err() {
                    let shown: String = raw.iter().flat_map(|b| std::ascii::escape_default(*b)).map(char::from).collect();
                    problems.push(format!(
                        "kernel command line: the word \"{shown}\" (byte {offset}) is not UTF-8; read as \"{}\"",
                        String::from_utf8_lossy(raw)
                    ));
                }
                offset += raw.len() + 1;
            }
        }
        (Cmdline::parse(&line), problems)
    }

    /// The module options of this command line (see [`ModuleOptions`]).
    pub fn module_options(&self) -> ModuleOptions {
        let mut options = ModuleOptions::default();
        for param in &self.params {
            let value = param.value.as_deref();
            match param.key.as_str() {
                "modprobe.blacklist" | "rd.driver.blacklist" => options.blacklist.extend(module_list(value.unwrap_or(""))),
                "viver.modules" | "rd.driver.pre" => {
                    options.force_load.extend(value.unwrap_or("").split(',').map(str::trim).filter(|m| !m.is_empty()).map(String::from))
                }
                key => {
                    if let Some((module, word)) = module_param(key, value) {
                        push_param(&mut options.params, module, &word);
                    }
                }
            }
        }
        options
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: Option<&str>) -> Param {
        Param { key: key.into(), value: value.map(Into::into) }
    }

    #[test]
    fn splits_like_the_kernel() {
        let c = Cmdline::parse("BOOT_IMAGE=/vmlinuz ro quiet viver.role=\"web server\" a=\"x\"y  \n");
        assert_eq!(
            c.params,
            vec![
                kv("BOOT_IMAGE", Some("/vmlinuz")),
                kv("ro", None),
                kv("quiet", None),
                kv("viver.role", Some("web server")),
                kv("a", Some("xy")),
            ]
        );
        assert!(c.init_args.is_empty());
    }

    #[test]
    fn words_after_double_dash_go_to_init() {
        let c = Cmdline::parse("console=ttyS0 -- single --foo");
        assert_eq!(c.params, vec![kv("console", Some("ttyS0"))]);
        assert_eq!(c.init_args, vec!["single", "--foo"]);
    }

    #[test]
    fn later_word_wins_and_junk_survives() {
        let c = Cmdline::parse("viver.timeout=5 viver.timeout=9 \"unterminated = quote");
        assert_eq!(c.last("viver.timeout"), Some(&kv("viver.timeout", Some("9"))));
        assert_eq!(c.params.last(), Some(&kv("unterminated ", Some(" quote"))));
        assert_eq!(Cmdline::parse("").params, vec![]);
        assert_eq!(Cmdline::parse("=").params, vec![kv("", Some(""))]);
    }

    #[test]
    fn bytes_that_are_not_utf8_cost_only_their_word() {
        let (c, problems) = Cmdline::from_bytes(b"viver.timeout=7 bad=\xff\xfeok viver.debug\n");
        assert_eq!(c.last("viver.timeout"), Some(&kv("viver.timeout", Some("7"))));
        assert_eq!(c.last("viver.debug"), Some(&kv("viver.debug", None)));
        assert_eq!(c.last("bad"), Some(&kv("bad", Some("\u{fffd}\u{fffd}ok"))));
        assert_eq!(
            problems,
            vec![
                "kernel command line: the word \"bad=\\xff\\xfeok\" (byte 16) is not UTF-8; read as \"bad=\u{fffd}\u{fffd}ok\"".to_string()
            ]
        );
        let (c, problems) = Cmdline::from_bytes(b"quiet");
        assert!(problems.is_empty());
        assert_eq!(c.params, vec![kv("quiet", None)]);
    }

    #[test]
    fn module_options_as_modprobe_read_them() {
        let c = Cmdline::parse(
            "quiet root=/dev/x modprobe.blacklist=e1000,foo-bar viver.modules=usb-storage rd.driver.pre=dm-mod \
             ahci.mobile_lpm_policy=1 libata.force=\"1:noncq 2:udma\" usb-storage.delay_use=0 i915.modeset console=ttyS0 a/b.c=d",
        );
        let o = c.module_options();
        assert_eq!(o.blacklist, vec!["e1000", "foo_bar"]);
        assert_eq!(o.force_load, vec!["usb-storage", "dm-mod"]);
        let params: Vec<(&str, &str)> = o.params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            params,
            vec![
                ("ahci", "mobile_lpm_policy=1"),
                ("i915", "modeset"),
                ("libata", "force=\"1:noncq 2:udma\""),
                ("usb_storage", "delay_use=0")
            ]
        );
    }
}
