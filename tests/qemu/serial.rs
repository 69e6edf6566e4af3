//! What the guest printed on ttyS0, and the sections the test roots print.

/// What the guest printed on its serial console.
#[derive(Clone, Debug)]
pub struct SerialLog {
    pub text: String,
}

impl SerialLog {
    pub fn contains(&self, needle: &str) -> bool {
        self.text.contains(needle)
    }

    /// The rest of the first line starting with `prefix` (after trimming leading
    /// whitespace), e.g. `line_after("PERSIST: ")`.
    pub fn line_after(&self, prefix: &str) -> Option<String> {
        self.lines().find_map(|line| line.trim_start().strip_prefix(prefix).map(|rest| rest.trim_end().to_string()))
    }

    /// Lines without the serial `\r`.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.text.lines().map(|l| l.trim_end_matches('\r'))
    }

    /// Lines strictly between the first `begin` marker line and the next `end` line.
    pub fn section(&self, begin: &str, end: &str) -> Option<Vec<String>> {
        let mut lines = self.lines().skip_while(|l| l.trim() != begin);
        lines.next()?;
        let mut out = Vec::new();
        for line in lines {
            if line.trim() == end {
                return Some(out);
            }
            out.push(line.to_string());
        }
        None
    }

    /// `/run/viver/boot.json` as printed by the test root between BOOT-JSON-BEGIN/END.
    pub fn boot_json(&self) -> Result<serde_json::Value, String> {
        let lines = self
            .section("BOOT-JSON-BEGIN", "BOOT-JSON-END")
            .ok_or_else(|| format!("no BOOT-JSON-BEGIN..END section in the serial log; tail:\n{}", self.tail(30)))?;
        // Kernel messages may interleave with the output: keep only JSON-looking lines.
        let text: String = lines.iter().filter(|l| !is_kernel_message(l)).map(|l| format!("{l}\n")).collect();
        serde_json::from_str(&text).map_err(|e| format!("boot.json from the serial log is not JSON: {e}\n{text}"))
    }

    /// `/proc/mounts` of the booted root as (device, mount point, fstype, options).
    pub fn mounts(&self) -> Vec<Mount> {
        self.section("MOUNTS-BEGIN", "MOUNTS-END")
            .unwrap_or_default()
            .iter()
            .filter(|l| !is_kernel_message(l))
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                Some(Mount {
                    device: fields.next()?.to_string(),
                    mount_point: fields.next()?.to_string(),
                    fstype: fields.next()?.to_string(),
                    options: fields.next()?.to_string(),
                })
            })
            .collect()
    }

    /// The mount at exactly `mount_point`, if any (the last one: it is the visible one).
    pub fn mount_at(&self, mount_point: &str) -> Option<Mount> {
        self.mounts().into_iter().rev().find(|m| m.mount_point == mount_point)
    }

    /// The last `n` lines, for error messages.
    pub fn tail(&self, n: usize) -> String {
        let lines: Vec<&str> = self.lines().collect();
        lines.get(lines.len().saturating_sub(n)..).unwrap_or_default().join("\n")
    }
}

/// `[   12.345678] text`: a kernel message on the console, possibly interleaved with
/// what the test root prints.
fn is_kernel_message(line: &str) -> bool {
    let Some(rest) = line.trim_start().strip_prefix('[') else {
        return false;
    };
    let Some((stamp, _)) = rest.split_once(']') else {
        return false;
    };
    let stamp = stamp.trim_start();
    match stamp.split_once('.') {
        Some((secs, micros)) => {
            !secs.is_empty() && secs.chars().all(|c| c.is_ascii_digit()) && micros.len() == 6 && micros.chars().all(|c| c.is_ascii_digit())
        }
        None => false,
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Mount {
    pub device: String,
    pub mount_point: String,
    pub fstype: String,
    pub options: String,
}
