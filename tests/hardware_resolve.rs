//! Our modalias matcher against kmod (`modprobe --resolve-alias`) on the same module
//! tree: at least 2,000 real and synthesised modaliases, no difference allowed.

mod hardware_common;

use std::process::Command;
use viver::hardware::ModuleTables;

use hardware_common::REAL;

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn hex(&mut self, n: usize) -> String {
        (0..n).map(|_| b"0123456789ABCDEF"[(self.next() % 16) as usize] as char).collect()
    }
}

/// A concrete string the pattern (usually) matches: '*' becomes a random hex run
/// (sometimes empty), '?' a digit, a bracket its first member.
fn instantiate(pattern: &str, rng: &mut XorShift) -> String {
    let mut out = String::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => {
                let n = (rng.next() % 9) as usize;
                out.push_str(&rng.hex(n));
            }
            '?' => out.push_str(&rng.hex(1)),
            '[' => {
                let mut first = None;
                for d in chars.by_ref() {
                    if d == ']' {
                        break;
                    }
                    if first.is_none() && d != '!' && d != '^' {
                        first = Some(d);
                    }
                }
                if let Some(f) = first {
                    out.push(f);
                }
            }
            c => out.push(c),
        }
    }
    out
}

fn kmod_resolve(base: &std::path::Path, alias: &str) -> Vec<String> {
    let out = Command::new("modprobe")
        .args(["-d"])
        .arg(base)
        .args(["-S", &hardware_common::release(), "-C", "/dev/null", "--resolve-alias", "--"])
        .arg(alias)
        .output()
        .expect("modprobe (kmod) must be installed");
    String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect()
}

#[test]
fn resolve_equals_kmod_on_2000_modaliases() {
    let release = hardware_common::depmod_reference();
    let base = release.parent().unwrap().parent().unwrap().parent().unwrap().to_path_buf();
    let (tables, _) = ModuleTables::load(&release).unwrap();
    let (built, _) = ModuleTables::build(&hardware_common::release_dir()).unwrap();

    let mut inputs: Vec<String> = REAL.iter().map(|s| s.to_string()).collect();
    let patterns: Vec<String> = tables.aliases().map(|(p, _)| p.to_string()).collect();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    while inputs.len() < 2400 {
        let p = &patterns[(rng.next() % patterns.len() as u64) as usize];
        let mut s = instantiate(p, &mut rng);
        // Every fourth one gets a mutation, so near misses are tested too.
        if rng.next() % 4 == 0 && !s.is_empty() {
            let pos = (rng.next() as usize) % s.len();
            if s.is_char_boundary(pos) && s.is_char_boundary(pos + 1) {
                s.replace_range(pos..pos + 1, &rng.hex(1));
            }
        }
        inputs.push(s);
    }

    let mut differences = Vec::new();
    let mut resolved = 0;
    for alias in &inputs {
        let want = kmod_resolve(&base, alias);
        let got: Vec<String> = tables.resolve_explained(alias).into_iter().map(|m| m.module).collect();
        let got_built: Vec<String> = built.resolve_explained(alias).into_iter().map(|m| m.module).collect();
        if !want.is_empty() {
            resolved += 1;
        }
        if got != want || got_built != want {
            differences.push(format!("{alias:?}: kmod {want:?}, loaded {got:?}, built {got_built:?}"));
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} differ, e.g.:\n{}",
        differences.len(),
        inputs.len(),
        differences.iter().take(15).cloned().collect::<Vec<_>>().join("\n")
    );
    assert!(inputs.len() >= 2000 && resolved > 1500, "only {resolved} of {} resolved to something", inputs.len());
}
