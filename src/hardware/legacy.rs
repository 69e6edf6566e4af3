//! The 2.6-era module maps, modules.pcimap and modules.usbmap: reading them (a kernel
//! that has only these must still get its PCI and USB drivers), matching PCI/USB
//! modaliases against them, and writing them from a modern kernel's aliases so the
//! legacy path can be checked against the modern one.

use super::error::{HwError, TableWarning};
use super::matches::Match;
use super::modinfo::normalize_module_name;
use std::collections::BTreeSet;
use std::path::Path;

const PCI_ANY: u32 = 0xffff_ffff;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciMapEntry {
    pub module: String,
    pub vendor: u32,
    pub device: u32,
    pub subvendor: u32,
    pub subdevice: u32,
    pub class: u32,
    pub class_mask: u32,
}

/// USB match_flags bits (include/linux/mod_devicetable.h).
pub mod usb_flags {
    pub const VENDOR: u16 = 0x001;
    pub const PRODUCT: u16 = 0x002;
    pub const DEV_LO: u16 = 0x004;
    pub const DEV_HI: u16 = 0x008;
    pub const DEV_CLASS: u16 = 0x010;
    pub const DEV_SUBCLASS: u16 = 0x020;
    pub const DEV_PROTOCOL: u16 = 0x040;
    pub const INT_CLASS: u16 = 0x080;
    pub const INT_SUBCLASS: u16 = 0x100;
    pub const INT_PROTOCOL: u16 = 0x200;
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UsbMapEntry {
    pub module: String,
    pub match_flags: u16,
    pub id_vendor: u16,
    pub id_product: u16,
    pub bcd_lo: u16,
    pub bcd_hi: u16,
    pub dev_class: u8,
    pub dev_subclass: u8,
    pub dev_protocol: u8,
    pub int_class: u8,
    pub int_subclass: u8,
    pub int_protocol: u8,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LegacyMaps {
    pub pci: Vec<PciMapEntry>,
    pub usb: Vec<UsbMapEntry>,
}

/// A PCI device as its modalias describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciId {
    pub vendor: u32,
    pub device: u32,
    pub subvendor: u32,
    pub subdevice: u32,
    /// base class << 16 | subclass << 8 | prog-if
    pub class: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsbId {
    pub vendor: u16,
    pub product: u16,
    pub bcd: u16,
    pub dev_class: u8,
    pub dev_subclass: u8,
    pub dev_protocol: u8,
    pub int_class: u8,
    pub int_subclass: u8,
    pub int_protocol: u8,
}

/// Reads fixed-width uppercase/lowercase hex fields after their tags: "v%08X" ...
fn parse_tagged_hex(mut s: &str, fields: &[(&str, usize)]) -> Option<Vec<u32>> {
    let mut out = Vec::with_capacity(fields.len());
    for (tag, width) in fields {
        s = s.strip_prefix(tag)?;
        let digits = s.get(..*width)?;
        out.push(u32::from_str_radix(digits, 16).ok()?);
        s = s.get(*width..)?;
    }
    Some(out)
}

pub fn parse_pci_modalias(modalias: &str) -> Option<PciId> {
    let rest = modalias.strip_prefix("pci:")?;
    let f = parse_tagged_hex(rest, &[("v", 8), ("d", 8), ("sv", 8), ("sd", 8), ("bc", 2), ("sc", 2), ("i", 2)])?;
    Some(PciId { vendor: f[0], device: f[1], subvendor: f[2], subdevice: f[3], class: (f[4] << 16) | (f[5] << 8) | f[6] })
}

pub fn parse_usb_modalias(modalias: &str) -> Option<UsbId> {
    let rest = modalias.strip_prefix("usb:")?;
    let f = parse_tagged_hex(rest, &[("v", 4), ("p", 4), ("d", 4), ("dc", 2), ("dsc", 2), ("dp", 2), ("ic", 2), ("isc", 2), ("ip", 2)])?;
    Some(UsbId {
        vendor: f[0] as u16,
        product: f[1] as u16,
        bcd: f[2] as u16,
        dev_class: f[3] as u8,
        dev_subclass: f[4] as u8,
        dev_protocol: f[5] as u8,
        int_class: f[6] as u8,
        int_subclass: f[7] as u8,
        int_protocol: f[8] as u8,
    })
}

impl PciMapEntry {
    pub fn matches(&self, id: &PciId) -> bool {
        let field = |want: u32, have: u32| want == PCI_ANY || want == have;
        field(self.vendor, id.vendor)
            && field(self.device, id.device)
            && field(self.subvendor, id.subvendor)
            && field(self.subdevice, id.subdevice)
            && ((self.class ^ id.class) & self.class_mask) == 0
    }
}

impl UsbMapEntry {
    pub fn matches(&self, id: &UsbId) -> bool {
        use usb_flags::*;
        let f = self.match_flags;
        let check = |flag: u16, ok: bool| f & flag == 0 || ok;
        check(VENDOR, self.id_vendor == id.vendor)
            && check(PRODUCT, self.id_product == id.product)
            && check(DEV_LO, self.bcd_lo <= id.bcd)
            && check(DEV_HI, self.bcd_hi >= id.bcd)
            && check(DEV_CLASS, self.dev_class == id.dev_class)
            && check(DEV_SUBCLASS, self.dev_subclass == id.dev_subclass)
            && check(DEV_PROTOCOL, self.dev_protocol == id.dev_protocol)
            && check(INT_CLASS, self.int_class == id.int_class)
            && check(INT_SUBCLASS, self.int_subclass == id.int_subclass)
            && check(INT_PROTOCOL, self.int_protocol == id.int_protocol)
    }
}

fn parse_num(word: &str) -> Option<u32> {
    match word.strip_prefix("0x").or_else(|| word.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => word.parse().ok(),
    }
}

/// Splits a map line into its module name and `N` numbers (decimal or 0x hex); None for
/// comments and blank lines. Both legacy maps share this shape.
fn parse_map_line<const N: usize>(line: &str) -> Option<Result<(String, [u32; N]), String>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    if words.len() < N + 1 {
        return Some(Err(format!("expected module and {N} numbers, found {} fields", words.len())));
    }
    let mut n = [0u32; N];
    for (i, w) in words[1..=N].iter().enumerate() {
        match parse_num(w) {
            Some(v) => n[i] = v,
            None => return Some(Err(format!("{w:?} is not a number"))),
        }
    }
    Some(Ok((normalize_module_name(words[0]), n)))
}

/// Adds a parsed entry to `into`; returns the problem of a bad line.
fn keep<T>(parsed: Option<Result<T, String>>, into: &mut Vec<T>) -> Option<String> {
    match parsed? {
        Ok(entry) => {
            into.push(entry);
            None
        }
        Err(problem) => Some(problem),
    }
}

/// Parses one modules.pcimap line (None for comments/blank lines).
pub fn parse_pcimap_line(line: &str) -> Option<Result<PciMapEntry, String>> {
    Some(parse_map_line::<6>(line)?.map(|(module, n)| PciMapEntry {
        module,
        vendor: n[0],
        device: n[1],
        subvendor: n[2],
        subdevice: n[3],
        class: n[4],
        class_mask: n[5],
    }))
}

/// Parses one modules.usbmap line (None for comments/blank lines).
pub fn parse_usbmap_line(line: &str) -> Option<Result<UsbMapEntry, String>> {
    let (module, n) = match parse_map_line::<11>(line)? {
        Ok(parsed) => parsed,
        Err(e) => return Some(Err(e)),
    };
    let too_big = n[0] > 0xffff || n[1..5].iter().any(|v| *v > 0xffff) || n[5..].iter().any(|v| *v > 0xff);
    if too_big {
        return Some(Err("a field is out of range".into()));
    }
    Some(Ok(UsbMapEntry {
        module,
        match_flags: n[0] as u16,
        id_vendor: n[1] as u16,
        id_product: n[2] as u16,
        bcd_lo: n[3] as u16,
        bcd_hi: n[4] as u16,
        dev_class: n[5] as u8,
        dev_subclass: n[6] as u8,
        dev_protocol: n[7] as u8,
        int_class: n[8] as u8,
        int_subclass: n[9] as u8,
        int_protocol: n[10] as u8,
    }))
}

/// The storage stack a controller needs once its driver is in, for kernels where
/// only the legacy maps drive detection (their disks have no modalias of their own
/// there): the `followers` of its row in [`crate::disks::controllers`].
pub fn storage_followers_for_pci(vendor: u32, class: u32) -> &'static [&'static str] {
    crate::disks::controllers::controller(vendor, class).map_or(&[], |c| c.followers)
}

impl LegacyMaps {
    pub fn is_empty(&self) -> bool {
        self.pci.is_empty() && self.usb.is_empty()
    }

    pub fn load(release_dir: &Path, warnings: &mut Vec<TableWarning>) -> Result<LegacyMaps, HwError> {
        let mut maps = LegacyMaps::default();
        for (name, is_pci) in [("modules.pcimap", true), ("modules.usbmap", false)] {
            let path = release_dir.join(name);
            let text = match std::fs::read(&path) {
                Ok(b) => String::from_utf8_lossy(&b).to_string(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(HwError::io(&path, e)),
            };
            for (i, line) in text.lines().enumerate() {
                let problem =
                    if is_pci { keep(parse_pcimap_line(line), &mut maps.pci) } else { keep(parse_usbmap_line(line), &mut maps.usb) };
                if let Some(p) = problem {
                    warnings.push(TableWarning::at(&path, Some(i + 1), format!("{p}; line skipped")));
                }
            }
        }
        Ok(maps)
    }

    /// Modules for a PCI or USB modalias from the maps, with the storage stack the
    /// controller's class calls for.
    pub fn resolve(&self, modalias: &str) -> Vec<Match> {
        let mut out: Vec<Match> = Vec::new();
        fn push(out: &mut Vec<Match>, module: &str, why: String) {
            if !out.iter().any(|m| m.module == module) {
                out.push(Match { module: module.to_string(), why });
            }
        }
        if let Some(id) = parse_pci_modalias(modalias) {
            for e in self.pci.iter().filter(|e| e.matches(&id)) {
                push(
                    &mut out,
                    &e.module,
                    format!("modules.pcimap {:08x}:{:08x} class {:06x}/{:06x}", e.vendor, e.device, e.class, e.class_mask),
                );
            }
            if !out.is_empty() {
                for f in storage_followers_for_pci(id.vendor, id.class) {
                    push(&mut out, f, format!("storage stack for PCI class {:06x} (legacy maps)", id.class));
                }
            }
        } else if let Some(id) = parse_usb_modalias(modalias) {
            for e in self.usb.iter().filter(|e| e.matches(&id)) {
                push(&mut out, &e.module, format!("modules.usbmap {:04x}:{:04x} flags {:#x}", e.id_vendor, e.id_product, e.match_flags));
            }
            if !out.is_empty() && id.int_class == 0x08 {
                for f in ["sd_mod", "sr_mod"] {
                    push(&mut out, f, "storage stack for a USB mass-storage interface (legacy maps)".into());
                }
            }
        }
        out
    }

    pub fn subset(&self, names: &BTreeSet<String>) -> LegacyMaps {
        LegacyMaps {
            pci: self.pci.iter().filter(|e| names.contains(&e.module)).cloned().collect(),
            usb: self.usb.iter().filter(|e| names.contains(&e.module)).cloned().collect(),
        }
    }

    /// Converts modern pci:/usb: alias patterns into map entries. Patterns the old
    /// format cannot express (USB interface numbers, partial class bytes, odd globs)
    /// are counted and left out.
    pub fn from_aliases<'a>(aliases: impl Iterator<Item = (&'a str, &'a str)>) -> (LegacyMaps, usize) {
        let mut maps = LegacyMaps::default();
        let mut skipped = 0;
        for (pattern, module) in aliases {
            if pattern.starts_with("pci:") {
                match pci_entry_from_alias(pattern, module) {
                    Some(e) => maps.pci.push(e),
                    None => skipped += 1,
                }
            } else if pattern.starts_with("usb:") {
                match usb_entry_from_alias(pattern, module) {
                    Some(e) => maps.usb.push(e),
                    None => skipped += 1,
                }
            }
        }
        (maps, skipped)
    }

    pub fn pcimap_text(&self) -> String {
        let mut s = String::from("# pci module         vendor     device     subvendor  subdevice  class      class_mask driver_data\n");
        for e in &self.pci {
            s.push_str(&format!(
                "{:<20} 0x{:08x} 0x{:08x} 0x{:08x} 0x{:08x} 0x{:08x} 0x{:08x} 0x0\n",
                e.module, e.vendor, e.device, e.subvendor, e.subdevice, e.class, e.class_mask
            ));
        }
        s
    }

    pub fn usbmap_text(&self) -> String {
        let mut s = String::from("# usb module         match_flags idVendor idProduct bcdDevice_lo bcdDevice_hi bDeviceClass bDeviceSubClass bDeviceProtocol bInterfaceClass bInterfaceSubClass bInterfaceProtocol driver_info\n");
        for e in &self.usb {
            s.push_str(&format!(
                "{:<20} 0x{:04x}      0x{:04x}   0x{:04x}    0x{:04x}       0x{:04x}       0x{:02x}         0x{:02x}            0x{:02x}            0x{:02x}            0x{:02x}               0x{:02x}               0x00000000\n",
                e.module, e.match_flags, e.id_vendor, e.id_product, e.bcd_lo, e.bcd_hi, e.dev_class, e.dev_subclass, e.dev_protocol, e.int_class, e.int_subclass, e.int_protocol
            ));
        }
        s
    }

    pub fn write(&self, dir: &Path) -> Result<(), HwError> {
        for (name, text) in [("modules.pcimap", self.pcimap_text()), ("modules.usbmap", self.usbmap_text())] {
            std::fs::write(dir.join(name), text).map_err(|e| HwError::io(dir.join(name), e))?;
        }
        Ok(())
    }
}

/// One alias field: "*" (any) or exactly `width` hex digits. Advances `s`.
fn glob_field(s: &mut &str, tag: &str, width: usize) -> Option<Option<u32>> {
    *s = s.strip_prefix(tag)?;
    if let Some(rest) = s.strip_prefix('*') {
        *s = rest;
        return Some(None);
    }
    let digits = s.get(..width)?;
    let v = u32::from_str_radix(digits, 16).ok()?;
    *s = s.get(width..)?;
    Some(Some(v))
}

fn pci_entry_from_alias(pattern: &str, module: &str) -> Option<PciMapEntry> {
    let mut s = pattern.strip_prefix("pci:")?;
    let vendor = glob_field(&mut s, "v", 8)?;
    let device = glob_field(&mut s, "d", 8)?;
    let subvendor = glob_field(&mut s, "sv", 8)?;
    let subdevice = glob_field(&mut s, "sd", 8)?;
    let bc = glob_field(&mut s, "bc", 2)?;
    let sc = glob_field(&mut s, "sc", 2)?;
    let pi = glob_field(&mut s, "i", 2)?;
    if !(s.is_empty() || s == "*") {
        return None;
    }
    let (mut class, mut mask) = (0u32, 0u32);
    for (shift, v) in [(16, bc), (8, sc), (0, pi)] {
        if let Some(v) = v {
            class |= v << shift;
            mask |= 0xff << shift;
        }
    }
    Some(PciMapEntry {
        module: normalize_module_name(module),
        vendor: vendor.unwrap_or(PCI_ANY),
        device: device.unwrap_or(PCI_ANY),
        subvendor: subvendor.unwrap_or(PCI_ANY),
        subdevice: subdevice.unwrap_or(PCI_ANY),
        class,
        class_mask: mask,
    })
}

/// The bcdDevice part of a USB alias ("d*", "d0370", "d01[0-2]*", "d[0-9A-B]*"...)
/// as an inclusive range; None when it is not a contiguous range.
fn bcd_range(s: &mut &str) -> Option<Option<(u16, u16)>> {
    *s = s.strip_prefix('d')?;
    let (mut lo, mut hi, mut positions) = (0u32, 0u32, 0usize);
    loop {
        if positions == 4 {
            break;
        }
        let c = s.chars().next()?;
        if c == '[' {
            let end = s.find(']')?;
            let set = s.get(1..end)?;
            let (min, max) = bracket_min_max(set)?;
            lo = lo << 4 | min;
            hi = hi << 4 | max;
            *s = s.get(end + 1..)?;
        } else if let Some(d) = c.to_digit(16) {
            if c.is_ascii_lowercase() {
                return None;
            }
            lo = lo << 4 | d;
            hi = hi << 4 | d;
            *s = s.get(1..)?;
        } else {
            break;
        }
        positions += 1;
    }
    if positions < 4 {
        // The rest is any digit: must be a '*' (which also covers the remaining fields' start).
        *s = s.strip_prefix('*')?;
        let fill = 4 - positions;
        lo <<= 4 * fill;
        hi = (hi << (4 * fill)) | ((1 << (4 * fill)) - 1);
        if positions == 0 {
            return Some(None);
        }
    }
    Some(Some((lo as u16, hi as u16)))
}

fn bracket_min_max(set: &str) -> Option<(u32, u32)> {
    let mut digits = Vec::new();
    let b = set.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let a = (b[i] as char).to_digit(16)?;
        if b.get(i + 1) == Some(&b'-') {
            let z = (*b.get(i + 2)? as char).to_digit(16)?;
            digits.extend(a..=z);
            i += 3;
        } else {
            digits.push(a);
            i += 1;
        }
    }
    digits.sort();
    // Only contiguous sets describe a range.
    if digits.windows(2).any(|w| w[1] > w[0] + 1) {
        return None;
    }
    Some((*digits.first()?, *digits.last()?))
}

fn usb_entry_from_alias(pattern: &str, module: &str) -> Option<UsbMapEntry> {
    use usb_flags::*;
    let mut s = pattern.strip_prefix("usb:")?;
    let vendor = glob_field(&mut s, "v", 4)?;
    let product = glob_field(&mut s, "p", 4)?;
    let bcd = bcd_range(&mut s)?;
    let dc = glob_field(&mut s, "dc", 2)?;
    let dsc = glob_field(&mut s, "dsc", 2)?;
    let dp = glob_field(&mut s, "dp", 2)?;
    let ic = glob_field(&mut s, "ic", 2)?;
    let isc = glob_field(&mut s, "isc", 2)?;
    let ip = glob_field(&mut s, "ip", 2)?;
    let inum = glob_field(&mut s, "in", 2)?;
    if inum.is_some() || !(s.is_empty() || s == "*") {
        return None;
    }
    let mut e = UsbMapEntry { module: normalize_module_name(module), ..Default::default() };
    let mut set = |flag: u16, v: Option<u32>| -> u32 {
        if v.is_some() {
            e.match_flags |= flag;
        }
        v.unwrap_or(0)
    };
    let id_vendor = set(VENDOR, vendor) as u16;
    let id_product = set(PRODUCT, product) as u16;
    let dev_class = set(DEV_CLASS, dc) as u8;
    let dev_subclass = set(DEV_SUBCLASS, dsc) as u8;
    let dev_protocol = set(DEV_PROTOCOL, dp) as u8;
    let int_class = set(INT_CLASS, ic) as u8;
    let int_subclass = set(INT_SUBCLASS, isc) as u8;
    let int_protocol = set(INT_PROTOCOL, ip) as u8;
    e.id_vendor = id_vendor;
    e.id_product = id_product;
    e.dev_class = dev_class;
    e.dev_subclass = dev_subclass;
    e.dev_protocol = dev_protocol;
    e.int_class = int_class;
    e.int_subclass = int_subclass;
    e.int_protocol = int_protocol;
    if let Some((lo, hi)) = bcd {
        e.match_flags |= DEV_LO | DEV_HI;
        e.bcd_lo = lo;
        e.bcd_hi = hi;
    }
    Some(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_alias_round_trips_through_pcimap() {
        let e = pci_entry_from_alias("pci:v00008086d00002922sv*sd*bc*sc*i*", "ahci").unwrap();
        assert_eq!((e.vendor, e.device, e.subvendor, e.class_mask), (0x8086, 0x2922, PCI_ANY, 0));
        let c = pci_entry_from_alias("pci:v*d*sv*sd*bc01sc06i01*", "ahci").unwrap();
        assert_eq!((c.class, c.class_mask), (0x010601, 0xffffff));
        let id = parse_pci_modalias("pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01").unwrap();
        assert!(e.matches(&id) && c.matches(&id));
        let line = LegacyMaps { pci: vec![e.clone()], usb: vec![] }.pcimap_text();
        let parsed = parse_pcimap_line(line.lines().nth(1).unwrap()).unwrap().unwrap();
        assert_eq!(parsed, e);
    }

    #[test]
    fn usb_bcd_ranges_convert() {
        let e = usb_entry_from_alias("usb:v0525pA4A5d01[0-2]*dc*dsc*dp*ic*isc*ip*in*", "g").unwrap();
        assert_eq!((e.bcd_lo, e.bcd_hi), (0x0100, 0x012f));
        let e = usb_entry_from_alias("usb:v0421p0019d0370dc*dsc*dp*ic*isc*ip*in*", "usb_storage").unwrap();
        assert_eq!((e.bcd_lo, e.bcd_hi, e.match_flags), (0x0370, 0x0370, 0xf));
        let e = usb_entry_from_alias("usb:v*p*d*dc*dsc*dp*ic08isc06ip50in*", "usb_storage").unwrap();
        assert_eq!(e.match_flags, 0x380);
        assert!(usb_entry_from_alias("usb:v1234p5678d*dc*dsc*dp*ic*isc*ip*in02*", "x").is_none());
        let id = parse_usb_modalias("usb:v0781p5567d0100dc00dsc00dp00ic08isc06ip50in00").unwrap();
        assert!(e.matches(&id));
        let line = LegacyMaps { pci: vec![], usb: vec![e.clone()] }.usbmap_text();
        assert_eq!(parse_usbmap_line(line.lines().nth(1).unwrap()).unwrap().unwrap(), e);
    }

    #[test]
    fn bad_map_lines_are_reported() {
        assert!(parse_pcimap_line("# comment").is_none());
        assert!(parse_pcimap_line("e1000 0x8086").unwrap().is_err());
        assert!(parse_usbmap_line("x 0x3 zz 0 0 0 0 0 0 0 0 0").unwrap().is_err());
    }

    #[test]
    fn controller_class_pulls_in_storage_stack() {
        let maps = LegacyMaps {
            pci: vec![PciMapEntry {
                module: "ahci".into(),
                vendor: PCI_ANY,
                device: PCI_ANY,
                subvendor: PCI_ANY,
                subdevice: PCI_ANY,
                class: 0x010601,
                class_mask: 0xffffff,
            }],
            usb: vec![],
        };
        let r: Vec<String> = maps.resolve("pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01").into_iter().map(|m| m.module).collect();
        assert_eq!(&r[..3], &["ahci", "sd_mod", "sr_mod"]);
    }
}
