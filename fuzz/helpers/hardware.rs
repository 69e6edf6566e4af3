//! Entry points that feed arbitrary bytes to each hardware parser; the cargo-fuzz
//! targets in fuzz/fuzz_targets and the deterministic robustness test
//! (tests/hardware_robustness.rs) both include this file with `#[path]`, so it is not
//! part of the viver crate (nor of the /init binary). None of these may panic.
// Each includer uses its own subset.
#![allow(dead_code)]

use viver::hardware::fnmatch::{fnmatch, literal_prefix};
use viver::hardware::index::{normalize_alias, parse_alias_line, parse_dep_line};
use viver::hardware::legacy::{parse_pci_modalias, parse_pcimap_line, parse_usb_modalias, parse_usbmap_line, LegacyMaps};
use viver::hardware::modinfo::{parse_module, split_modinfo};
use viver::hardware::uevent::parse_uevent;

/// modules.alias / modules.dep text.
pub fn alias_file(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut pairs = Vec::new();
    for line in text.lines() {
        if let Some(Ok((p, m))) = parse_alias_line(line) {
            pairs.push((p, m));
        }
        let _ = parse_dep_line(line);
    }
    let _ = LegacyMaps::from_aliases(pairs.into_iter());
}

/// modules.pcimap / modules.usbmap text, and PCI/USB modaliases.
pub fn legacy_maps(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut maps = LegacyMaps::default();
    for line in text.lines() {
        if let Some(Ok(e)) = parse_pcimap_line(line) {
            maps.pci.push(e);
        }
        if let Some(Ok(e)) = parse_usbmap_line(line) {
            maps.usb.push(e);
        }
        let _ = parse_pci_modalias(line);
        let _ = parse_usb_modalias(line);
        let _ = maps.resolve(line);
    }
    let _ = maps.pcimap_text();
    let _ = maps.usbmap_text();
}

/// A module file (ELF with .modinfo) or a raw .modinfo section.
pub fn modinfo(data: &[u8]) {
    let _ = parse_module(data);
    let _ = split_modinfo(data);
}

/// Pattern and text separated by the first NUL (or the input's middle).
pub fn matcher(data: &[u8]) {
    let split = data.iter().position(|b| *b == 0).unwrap_or(data.len() / 2);
    let (pattern, text) = data.split_at(split);
    let text = text.get(1..).unwrap_or(&[]);
    let _ = fnmatch(pattern, text);
    let p = String::from_utf8_lossy(pattern);
    let _ = literal_prefix(&p);
    let _ = normalize_alias(&p);
}

/// A uevent netlink datagram.
pub fn uevent(data: &[u8]) {
    if let Some(ev) = parse_uevent(data) {
        let _ = ev.modalias();
    }
}
