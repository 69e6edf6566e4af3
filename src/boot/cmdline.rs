//! The kernel command line, split the way the kernel splits it.
//!
//! `/proc/cmdline` is one line of space-separated words; a double-quoted stretch keeps its
//! spaces (`viver.role="web server"`), the quotes themselves are dropped, and everything
//! after a lone `--` belongs to init. Nothing here knows what a parameter means: that is
//! [`super::settings`]'s job, so this stays a small, fuzzable tokenizer.

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
}
