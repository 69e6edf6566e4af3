//! Shell glob matching with the semantics of glibc's `fnmatch(pattern, string, 0)`,
//! which is what kmod uses for modules.alias patterns: `*`, `?`, `[...]` (ranges,
//! `!`/`^` negation, `[:class:]`), backslash escapes. Works on bytes; never panics.

/// True when `pattern` matches all of `text`.
pub fn fnmatch(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    // Where to resume after the last '*': (pattern position after '*', text position).
    let mut star: Option<(usize, usize)> = None;
    loop {
        if let Some(&pc) = pattern.get(p) {
            match pc {
                b'*' => {
                    // Collapse runs of '*'.
                    while pattern.get(p) == Some(&b'*') {
                        p += 1;
                    }
                    if p == pattern.len() {
                        return true;
                    }
                    star = Some((p, t));
                    continue;
                }
                b'?' if t < text.len() => {
                    p += 1;
                    t += 1;
                    continue;
                }
                b'[' if t < text.len() => {
                    if let Some((matched, next_p)) = match_bracket(pattern, p, text[t]) {
                        if matched {
                            p = next_p;
                            t += 1;
                            continue;
                        }
                    } else if text[t] == b'[' {
                        // Unterminated bracket: '[' stands for itself.
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
                b'\\' if t < text.len() => {
                    let lit = pattern.get(p + 1).copied().unwrap_or(b'\\');
                    if lit == text[t] {
                        p += if p + 1 < pattern.len() { 2 } else { 1 };
                        t += 1;
                        continue;
                    }
                }
                c if c != b'?' && c != b'[' && c != b'\\' && t < text.len() && c == text[t] => {
                    p += 1;
                    t += 1;
                    continue;
                }
                _ => {}
            }
        } else if t == text.len() {
            return true;
        }
        // Mismatch: let the last '*' swallow one more character.
        match star {
            Some((sp, st)) if st < text.len() => {
                star = Some((sp, st + 1));
                p = sp;
                t = st + 1;
            }
            _ => return false,
        }
    }
}

/// Matches one byte against the bracket expression starting at `pattern[start] == b'['`.
/// Returns (matched, index after the closing ']'), or None when the bracket never closes.
fn match_bracket(pattern: &[u8], start: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(pattern.get(i), Some(b'!') | Some(b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let pc = *pattern.get(i)?;
        if pc == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if pc == b'[' && pattern.get(i + 1) == Some(&b':') {
            let rest = pattern.get(i + 2..)?;
            if let Some(end) = rest.windows(2).position(|w| w == b":]") {
                let class = &rest[..end];
                matched |= class_matches(class, c);
                i += 2 + end + 2;
                continue;
            }
        }
        let (lo, after_lo) = if pc == b'\\' { (*pattern.get(i + 1)?, i + 2) } else { (pc, i + 1) };
        if pattern.get(after_lo) == Some(&b'-') && pattern.get(after_lo + 1).is_some_and(|b| *b != b']') {
            let hi_pos = after_lo + 1;
            let (hi, after_hi) = if pattern.get(hi_pos) == Some(&b'\\') {
                (*pattern.get(hi_pos + 1)?, hi_pos + 2)
            } else {
                (*pattern.get(hi_pos)?, hi_pos + 1)
            };
            matched |= lo <= c && c <= hi;
            i = after_hi;
        } else {
            matched |= lo == c;
            i = after_lo;
        }
    }
}

fn class_matches(class: &[u8], c: u8) -> bool {
    match class {
        b"alpha" => c.is_ascii_alphabetic(),
        b"digit" => c.is_ascii_digit(),
        b"alnum" => c.is_ascii_alphanumeric(),
        b"upper" => c.is_ascii_uppercase(),
        b"lower" => c.is_ascii_lowercase(),
        b"xdigit" => c.is_ascii_hexdigit(),
        b"space" => c.is_ascii_whitespace() || c == 0x0b,
        b"blank" => c == b' ' || c == b'\t',
        b"punct" => c.is_ascii_punctuation(),
        b"print" => (0x20..0x7f).contains(&c),
        b"graph" => (0x21..0x7f).contains(&c),
        b"cntrl" => c < 0x20 || c == 0x7f,
        _ => false,
    }
}

/// The part of a pattern before its first wildcard character: every string the
/// pattern matches starts with it. Used to index patterns.
pub fn literal_prefix(pattern: &str) -> &str {
    let end = pattern.find(['*', '?', '[', '\\']).unwrap_or(pattern.len());
    &pattern[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, t: &str) -> bool {
        fnmatch(p.as_bytes(), t.as_bytes())
    }

    #[test]
    fn globs_behave_like_fnmatch() {
        assert!(m("pci:v00008086d*sv*sd*bc*sc*i*", "pci:v00008086d00001234sv00001AF4sd00001100bc01sc06i01"));
        assert!(!m("pci:v00008086d*", "pci:v00001AF4d00001000"));
        assert!(m("usb:v*p*d*dc*dsc*dp*ic08isc06ip50in*", "usb:v0781p5567d0100dc00dsc00dp00ic08isc06ip50in00"));
        assert!(m("a?c", "abc") && !m("a?c", "ac"));
        assert!(m("d0[1-3]*", "d02ff") && !m("d0[1-3]*", "d04ff"));
        assert!(m("x[!a]y", "xby") && !m("x[!a]y", "xay"));
        assert!(m("x[^a]y", "xby"));
        assert!(m("[]]", "]"));
        assert!(m("a[[:digit:]]", "a5") && !m("a[[:digit:]]", "ax"));
        assert!(m("a\\*", "a*") && !m("a\\*", "ab"));
        assert!(m("a[b", "a[b"));
        assert!(m("*", "") && m("**a**", "xxa"));
        assert!(!m("", "a") && m("", ""));
        assert!(m("acpi*:PNP0A0[38]:*", "acpi:PNP0A03:") && !m("acpi*:PNP0A0[38]:*", "acpi:PNP0A05:"));
    }

    #[test]
    fn literal_prefix_stops_at_wildcards() {
        assert_eq!(literal_prefix("pci:v00008086d*sv*"), "pci:v00008086d");
        assert_eq!(literal_prefix("fs-ext4"), "fs-ext4");
        assert_eq!(literal_prefix("*"), "");
    }
}
