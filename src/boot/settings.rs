//! What the user asked for: defaults, then `viver.conf` files, then the kernel command
//! line (which always wins), folded into one [`Settings`].
//!
//! Both sources feed the same `apply` function with the key stripped of its `viver.`
//! prefix, so a key means the same thing in either place and is documented once (README,
//! "Parameters"). A bad value never stops the boot: it is reported in
//! [`Settings::problems`], the default is kept, and the boot goes on.
//!
//! Order, weakest first: defaults, the media's `viver.conf` files (in the order the media
//! were probed), the initrd's own `/etc/viver.conf`, the command line. A medium is
//! anybody's stick: its file may tune the search and choose among images, but may not
//! point writes at another device, nor set what is decided before any medium can be read
//! ([`NOT_FROM_MEDIA`]).

use super::stage::Stage;
use crate::cmdline::Cmdline;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// What to do when the boot cannot continue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PanicPolicy {
    /// A rescue shell on the console if the initrd has one, else [`PanicPolicy::Reboot`].
    Shell,
    /// Show the report, count down, reboot.
    Reboot,
    /// Show the report and power off.
    Halt,
}

/// Where the writes of the booted system go.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum CowSpec {
    /// A tmpfs: writes vanish at power-off. `size` is passed to tmpfs as is ("50%", "2g").
    Tmpfs { size: String },
    /// A directory on a writable disk (`/dev/sdb1`, `LABEL=x`, `UUID=x`), kept across boots.
    Persistent { device: String, dir: String },
    /// No overlay: the image itself, read-only, is the root.
    None,
}

/// How hard to check an image before trusting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verify {
    /// Superblock, size against the manifest. Reads a few KiB.
    Quick,
    /// Also the chunks (format 2 manifests) that hold the SquashFS metadata and the files
    /// init's exec needs: what the hand-over reads before the point of no return.
    Boot,
    /// Every chunk, i.e. the whole image (format 1: its SHA-256; always done for `toram`).
    Full,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Settings {
    pub image: Option<String>,
    /// `viver.media=` as given; parsed by the disk stage, which owns its meaning.
    pub media: Option<String>,
    pub cow: CowSpec,
    pub toram: bool,
    /// Longest wait for the devices that carry the image.
    #[serde(serialize_with = "as_secs")]
    pub timeout: Duration,
    /// Extra wait for USB/SD media that may still appear and beat what was found.
    #[serde(serialize_with = "as_secs")]
    pub media_wait: Duration,
    /// Quiet period after the last uevent/module load before the hardware is called settled.
    #[serde(serialize_with = "as_secs")]
    pub settle: Duration,
    pub panic: PanicPolicy,
    /// How long the failure report stays on screen before a reboot or power-off.
    #[serde(serialize_with = "as_secs")]
    pub panic_wait: Duration,
    pub role: Option<String>,
    /// `viver.net=http://SERVER:PORT/image/NAME.squashfs`: a network boot from that image.
    pub net: Option<String>,
    /// Longest wait for a network interface, its link and a DHCP lease on a network boot.
    #[serde(serialize_with = "as_secs")]
    pub net_timeout: Duration,
    /// The boot server's DHCP mode (`viver.dhcp=auto|force|full|proxy|off`, role `boot-server`).
    pub dhcp: String,
    /// `viver.dhcp.range=FIRST-LAST`: the addresses the boot server may give.
    pub dhcp_range: Option<String>,
    /// `viver.net.fill`: fetch the rest of the image into RAM in the background after the
    /// boot read what it needs (the node then survives the server leaving).
    pub net_fill: bool,
    /// `viver.vfield=ADDR:PORT[,...]`: on a network boot, read the image through V-FIELD,
    /// joining the swarm at these peers (the boot server's script names itself);
    /// `viver.vfield=off`: from the server alone.
    pub vfield: Option<Vec<std::net::SocketAddr>>,
    /// `viver.vfield.store=MiB`: what this node holds for the swarm, in RAM (default: a
    /// quarter of the RAM, at most the image).
    pub vfield_store: Option<u64>,
    /// `viver.vfield.replicas=N`: nodes each chunk should be held on, budgets allowing.
    pub vfield_replicas: u32,
    /// `viver.vfield.seed=http://...[,...]`: more HTTP servers holding the image file.
    pub vfield_seeds: Vec<String>,
    /// `viver.vfield.disk=/dev/...`: hold the V-FIELD store on this disk or partition
    /// (only if it is a V-FIELD store already or blank), up to `viver.vfield.store` MiB.
    pub vfield_disk: Option<String>,
    /// `viver.vfield.record[=SECONDS]`: record the boot profile (the order the boot first
    /// reads the image's chunks in) for SECONDS after the attach (default 120) into
    /// `/run/viver/vfield-profile.toml`, for `viver-kit profile`.
    pub vfield_record: Option<u64>,
    /// `viver.clients.append=WORD[,WORD...]` (role `boot-server`): words added to the
    /// command line of every client this node boots.
    pub clients_append: Vec<String>,
    /// `viver.vfield.standby=0`: never take over the boot server's role (default: a node
    /// netbooted through V-FIELD stands by, and one takes over when the server is gone).
    pub vfield_standby: bool,
    /// `BOOTIF=01-aa-bb-cc-dd-ee-ff` (pxelinux, iPXE): the interface the firmware booted from.
    pub bootif: Option<String>,
    pub debug: bool,
    pub quiet: bool,
    /// Modules to load whatever the hardware says (`viver.modules=`, `rd.driver.pre=`).
    pub modules: Vec<String>,
    /// `modprobe.blacklist=`, `rd.driver.blacklist=`.
    pub blacklist: Vec<String>,
    /// `module.param=value` words, per module (names with `_`).
    pub module_params: BTreeMap<String, String>,
    pub parallel: bool,
    pub verify: Verify,
    /// `init=`: the program to start in the new root.
    pub init: Option<PathBuf>,
    pub init_args: Vec<String>,
    /// `viver.break=STAGE` / `rd.break`: a shell before that stage.
    pub break_before: Option<Stage>,
    /// Everything that was not understood, one sentence each.
    pub problems: Vec<String>,
    /// Where each key that is not a default came from (`command line viver.timeout`,
    /// `/dev/vda1:/viver.conf`), by key name without `viver.`.
    pub origins: BTreeMap<String, String>,
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            image: None,
            media: None,
            cow: CowSpec::Tmpfs { size: "50%".into() },
            toram: false,
            timeout: Duration::from_secs(60),
            settle: Duration::from_millis(300),
            media_wait: Duration::from_secs(3),
            panic: PanicPolicy::Shell,
            panic_wait: Duration::from_secs(15),
            role: None,
            net: None,
            net_timeout: Duration::from_secs(30),
            bootif: None,
            net_fill: false,
            vfield: None,
            vfield_store: None,
            vfield_replicas: 2,
            vfield_seeds: Vec::new(),
            vfield_record: None,
            vfield_disk: None,
            vfield_standby: true,
            clients_append: Vec::new(),
            dhcp: "auto".into(),
            dhcp_range: None,
            debug: false,
            quiet: false,
            modules: Vec::new(),
            blacklist: Vec::new(),
            module_params: BTreeMap::new(),
            parallel: true,
            verify: Verify::Boot,
            init: None,
            init_args: Vec::new(),
            break_before: None,
            problems: Vec::new(),
            origins: BTreeMap::new(),
        }
    }
}

/// A `viver.conf` that was found, with where it was found (for messages) and what it
/// may set.
#[derive(Debug, Clone)]
pub struct ConfFile {
    pub origin: String,
    pub text: String,
    pub source: ConfSource,
}

/// Whose file a `viver.conf` is: that decides which keys it may set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfSource {
    /// The initrd's own `/etc/viver.conf`: part of the boot files, trusted like the
    /// command line.
    Initrd,
    /// A medium's: the device that carries it, with its filesystem's label and UUID.
    Medium { dev_path: String, label: Option<String>, uuid: Option<String> },
}

/// How long `viver.vfield.record` watches the boot's reads unless told: a Debian with a
/// desktop is up well within it on real hardware.
pub const DEFAULT_RECORD_SECONDS: u64 = 120;

/// Keys a medium's `viver.conf` may not set, and why (in the refusal's words).
pub const NOT_FROM_MEDIA: &[(&str, &str)] = &[
    (
        "blacklist",
        "drivers are loading before any medium can be read: use modprobe.blacklist= on the command line or the initrd's viver.conf",
    ),
    ("parallel", "drivers are loading before any medium can be read: use viver.parallel= on the command line or the initrd's viver.conf"),
    ("break", "a shell before a stage is asked for on the command line"),
    ("net", "a network boot is decided before any medium is read"),
    ("net.timeout", "a network boot is decided before any medium is read"),
    ("role", "a stranger's stick must not turn this machine into the LAN's boot server: set roles on the command line"),
    ("dhcp", "a stranger's stick must not change how this machine answers DHCP on the LAN"),
    ("dhcp.range", "a stranger's stick must not change the addresses this machine gives out"),
    ("vfield.disk", "a stranger's stick must not choose a disk for this machine to write to: name it on the command line"),
];

impl Settings {
    /// Defaults, then the media's files (in the order given), then the initrd's, then
    /// the command line.
    pub fn resolve(cmdline: &Cmdline, confs: &[ConfFile]) -> Settings {
        let mut settings = Settings::default();
        for conf in confs.iter().filter(|c| c.source != ConfSource::Initrd) {
            settings.apply_conf(conf);
        }
        for conf in confs.iter().filter(|c| c.source == ConfSource::Initrd) {
            settings.apply_conf(conf);
        }
        settings.apply_cmdline(cmdline);
        settings
    }

    fn apply_conf(&mut self, conf: &ConfFile) {
        let table: toml::Table = match toml::from_str(&conf.text) {
            Ok(table) => table,
            Err(e) => {
                let reason = e.to_string().replace('\n', " ");
                self.problems.push(format!("{}: not valid TOML, ignored: {}", conf.origin, reason.trim()));
                return;
            }
        };
        for (key, value) in table {
            let origin = format!("{} key {key}", conf.origin);
            let Some(word) = toml_to_word(&value) else {
                self.problems.push(format!("{origin}: value {value} is not a string, number, boolean or list of them"));
                continue;
            };
            match &conf.source {
                ConfSource::Initrd => self.apply(&key, Some(&word), &origin),
                ConfSource::Medium { dev_path, label, uuid } => {
                    if let Some((_, why)) = NOT_FROM_MEDIA.iter().find(|(k, _)| *k == key) {
                        self.problems.push(format!("{origin}: refused, a medium's viver.conf may not set {key}: {why}"));
                        continue;
                    }
                    if key == "cow" {
                        match medium_cow(&word, dev_path, label.as_deref(), uuid.as_deref()) {
                            Ok(word) => self.apply(&key, Some(&word), &origin),
                            Err(why) => self.problems.push(format!("{origin}: refused, {why}")),
                        }
                        continue;
                    }
                    self.apply(&key, Some(&word), &origin);
                }
            }
        }
    }

    fn apply_cmdline(&mut self, cmdline: &Cmdline) {
        for param in &cmdline.params {
            let value = param.value.as_deref();
            let origin = format!("command line {}", param.key);
            match param.key.as_str() {
                key if key.starts_with("viver.") => self.apply(&key["viver.".len()..], value, &origin),
                "init" => match value {
                    Some(path) if path.starts_with('/') => self.init = Some(PathBuf::from(path)),
                    _ => self.problems.push(format!("{origin}: init= needs an absolute path")),
                },
                "quiet" => self.quiet = true,
                "rd.debug" => self.debug = true,
                "rd.break" => self.apply("break", value.or(Some("switch-root")), &origin),
                "rd.live.ram" => self.apply("toram", value, &origin),
                "BOOTIF" => match parse_bootif(value.unwrap_or("")) {
                    Ok(mac) => self.bootif = Some(mac),
                    Err(why) => self.problems.push(format!("{origin}: {why}")),
                },
                "modprobe.blacklist" | "rd.driver.blacklist" => self.blacklist.extend(list(value.unwrap_or(""))),
                "rd.driver.pre" => self.modules.extend(list(value.unwrap_or(""))),
                key => self.maybe_module_param(key, value),
            }
        }
        self.init_args = cmdline.init_args.clone();
    }

    /// `usb_storage.delay_use=0` style words: the kernel keeps those for modules it has
    /// not loaded yet, and hands them to nobody; modprobe used to read them from
    /// /proc/cmdline, so we do.
    fn maybe_module_param(&mut self, key: &str, value: Option<&str>) {
        if let Some((module, word)) = crate::cmdline::module_param(key, value) {
            crate::cmdline::push_param(&mut self.module_params, module, &word);
        }
    }

    /// One setting, by its name without `viver.`; `origin` says where it came from.
    fn apply(&mut self, key: &str, value: Option<&str>, origin: &str) {
        let result: Result<(), String> = (|| {
            match key {
                "image" => self.image = Some(non_empty(value)?.to_string()),
                "media" => self.media = Some(non_empty(value)?.to_string()),
                "cow" => self.cow = parse_cow(non_empty(value)?)?,
                "toram" => self.toram = flag(value)?,
                "timeout" => self.timeout = Duration::from_secs_f64(seconds(non_empty(value)?, 0.0, 3600.0)?),
                "media_wait" => self.media_wait = Duration::from_secs_f64(seconds(non_empty(value)?, 0.0, 600.0)?),
                "settle" => self.settle = Duration::from_secs_f64(seconds(non_empty(value)?, 0.05, 60.0)?),
                "panic" => {
                    self.panic = match non_empty(value)? {
                        "shell" => PanicPolicy::Shell,
                        "reboot" => PanicPolicy::Reboot,
                        "halt" | "poweroff" => PanicPolicy::Halt,
                        other => return Err(format!("{other:?} is not shell, reboot or halt")),
                    }
                }
                "panic_wait" => self.panic_wait = Duration::from_secs_f64(seconds(non_empty(value)?, 0.0, 3600.0)?),
                "role" => self.role = Some(non_empty(value)?.to_string()),
                "net" => {
                    let url = non_empty(value)?;
                    if !url.starts_with("http://") {
                        return Err(format!("{url:?} is not an http:// URL of an image"));
                    }
                    self.net = Some(url.to_string());
                }
                "dhcp" => {
                    let word = non_empty(value)?;
                    if crate::serve::dhcp::probe::Setting::from_word(word).is_none() {
                        return Err(format!("{word:?} is not auto, force, full, proxy or off"));
                    }
                    self.dhcp = word.to_string();
                }
                "dhcp.range" => {
                    let range = non_empty(value)?;
                    crate::serve::cli::parse_range(range)?;
                    self.dhcp_range = Some(range.to_string());
                }
                "net.fill" => self.net_fill = flag(value)?,
                "vfield" => {
                    let value = non_empty(value)?;
                    self.vfield = if value == "off" {
                        None
                    } else {
                        let peers = plain_list(value)
                            .map(|p| p.parse::<std::net::SocketAddr>().map_err(|_| format!("{p:?} is not ADDRESS:PORT")))
                            .collect::<Result<Vec<_>, String>>()?;
                        Some(peers)
                    };
                }
                "vfield.store" => {
                    let mib = non_empty(value)?.parse::<u64>().map_err(|_| "not a number of MiB".to_string())?;
                    if mib == 0 {
                        return Err("0 MiB: a node must hold at least what it reads".into());
                    }
                    self.vfield_store = Some(mib);
                }
                "vfield.replicas" => {
                    self.vfield_replicas = match non_empty(value)?.parse::<u32>() {
                        Ok(n @ 1..=16) => n,
                        _ => return Err("not a number from 1 to 16".into()),
                    }
                }
                "vfield.standby" => self.vfield_standby = flag(value)?,
                "vfield.disk" => {
                    let path = non_empty(value)?;
                    if !path.starts_with("/dev/") || path.contains("/../") {
                        return Err(format!("{path:?} is not a device under /dev"));
                    }
                    self.vfield_disk = Some(path.to_string());
                }
                "vfield.record" => {
                    self.vfield_record = match value {
                        None => Some(DEFAULT_RECORD_SECONDS),
                        Some("0" | "off") => None,
                        Some(v) => match v.parse::<u64>() {
                            Ok(n @ 1..=3600) => Some(n),
                            _ => return Err(format!("{v:?} is not a number of seconds from 1 to 3600 (or off)")),
                        },
                    }
                }
                "clients.append" => self.clients_append.extend(plain_list(non_empty(value)?).map(String::from)),
                "vfield.seed" => {
                    for url in plain_list(non_empty(value)?) {
                        crate::nbd::source::http::Url::parse(url)?;
                        self.vfield_seeds.push(url.to_string());
                    }
                }
                "net.timeout" => self.net_timeout = Duration::from_secs_f64(seconds(non_empty(value)?, 1.0, 3600.0)?),
                "debug" => self.debug = flag(value)?,
                "quiet" => self.quiet = flag(value)?,
                "modules" => self.modules.extend(list(non_empty(value)?)),
                "blacklist" => self.blacklist.extend(list(non_empty(value)?)),
                "parallel" => self.parallel = flag(value)?,
                "verify" => {
                    self.verify = match non_empty(value)? {
                        "quick" => Verify::Quick,
                        "boot" => Verify::Boot,
                        "full" => Verify::Full,
                        other => return Err(format!("{other:?} is not quick, boot or full")),
                    }
                }
                "break" => {
                    let name = value.unwrap_or("switch-root");
                    self.break_before =
                        Some(Stage::from_name(name).ok_or_else(|| format!("{name:?} is not a stage ({})", Stage::names()))?);
                }
                other => return Err(format!("unknown setting {other:?}, ignored")),
            }
            Ok(())
        })();
        match result {
            Ok(()) => {
                self.origins.insert(key.to_string(), origin.to_string());
            }
            Err(what) => self.problems.push(format!("{origin}: {what}")),
        }
    }
}

/// A medium's `cow =`: writes may stay in RAM or go to the medium itself, never to
/// another device (a stranger's stick must not be able to make VIVER write to the
/// machine's disks). The device is pinned to the medium's own path, so a second disk
/// with the same label cannot be picked instead. Returns the value to apply.
fn medium_cow(value: &str, dev_path: &str, label: Option<&str>, uuid: Option<&str>) -> Result<String, String> {
    match parse_cow(value) {
        Ok(CowSpec::Persistent { device, dir }) => {
            let itself = device == dev_path
                || device.strip_prefix("LABEL=").is_some_and(|l| Some(l) == label)
                || device.strip_prefix("UUID=").is_some_and(|u| uuid.is_some_and(|own| own.eq_ignore_ascii_case(u)));
            if itself {
                Ok(format!("{dev_path}:{dir}"))
            } else {
                Err(format!(
                    "cow={value} points at another device than the medium carrying this file ({dev_path}); \
                     a medium's viver.conf may keep changes only on the medium itself: use viver.cow= on the \
                     command line or in the initrd's viver.conf to write elsewhere"
                ))
            }
        }
        // RAM or no layer: the parser reports a bad value in the words it uses everywhere.
        _ => Ok(value.to_string()),
    }
}

/// `01-aa-bb-cc-dd-ee-ff` (hardware type 1, Ethernet) -> `aa:bb:cc:dd:ee:ff`.
pub fn parse_bootif(value: &str) -> Result<String, String> {
    let parts: Vec<&str> = value.trim().split(['-', ':']).collect();
    let hex2 = |p: &&str| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit());
    match parts.as_slice() {
        [kind, mac @ ..] if *kind == "01" && mac.len() == 6 && mac.iter().all(hex2) => Ok(mac.join(":").to_ascii_lowercase()),
        _ => Err(format!("{value:?} is not 01-aa-bb-cc-dd-ee-ff")),
    }
}

fn non_empty(value: Option<&str>) -> Result<&str, String> {
    match value.map(str::trim) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err("needs a value".to_string()),
    }
}

/// A bare word (`viver.toram`) means yes.
fn flag(value: Option<&str>) -> Result<bool, String> {
    match value.map(str::trim) {
        None | Some("") | Some("1") | Some("yes") | Some("true") | Some("on") => Ok(true),
        Some("0") | Some("no") | Some("false") | Some("off") => Ok(false),
        Some(other) => Err(format!("{other:?} is not a yes/no value (1, 0, yes, no, true, false, on, off)")),
    }
}

fn seconds(value: &str, min: f64, max: f64) -> Result<f64, String> {
    let number = value.strip_suffix('s').unwrap_or(value);
    match number.parse::<f64>() {
        Ok(s) if s.is_finite() && (min..=max).contains(&s) => Ok(s),
        _ => Err(format!("{value:?} is not a number of seconds between {min} and {max}")),
    }
}

fn list(value: &str) -> Vec<String> {
    value.split(',').map(|m| m.trim().replace('-', "_")).filter(|m| !m.is_empty()).collect()
}

/// Comma-separated words as written (addresses, URLs).
fn plain_list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|w| !w.is_empty())
}

/// A tmpfs size as tmpfs takes it: a number with an optional k/m/g/% suffix.
fn tmpfs_size(size: &str) -> Result<String, String> {
    let lower = size.to_ascii_lowercase();
    let digits = lower.trim_end_matches(['k', 'm', 'g', '%']);
    let suffix_len = lower.len() - digits.len();
    if digits.is_empty() || suffix_len > 1 || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 15 {
        return Err(format!("{size:?} is not a size such as 50%, 512m or 2g"));
    }
    Ok(lower)
}

/// `viver.cow=` forms: `tmpfs`, `tmpfs:SIZE`, `SIZE`, `none`, or `DEVICE[:DIR]` with DEVICE
/// one of `/dev/...`, `LABEL=...`, `UUID=...` (DIR defaults to `/viver-cow`).
fn parse_cow(value: &str) -> Result<CowSpec, String> {
    if value == "none" {
        return Ok(CowSpec::None);
    }
    if value == "tmpfs" {
        return Ok(CowSpec::Tmpfs { size: "50%".into() });
    }
    if let Some(size) = value.strip_prefix("tmpfs:") {
        return Ok(CowSpec::Tmpfs { size: tmpfs_size(size)? });
    }
    if value.starts_with("/dev/") || value.starts_with("LABEL=") || value.starts_with("UUID=") {
        let (device, dir) = match value.split_once(':') {
            Some((device, dir)) => (device, dir),
            None => (value, "/viver-cow"),
        };
        if !dir.starts_with('/') || dir.split('/').any(|part| part == "..") {
            return Err(format!("directory {dir:?} must be absolute, without '..'"));
        }
        if device.len() <= "/dev/".len() || device.ends_with('=') {
            return Err(format!("device {device:?} is incomplete"));
        }
        return Ok(CowSpec::Persistent { device: device.to_string(), dir: dir.to_string() });
    }
    tmpfs_size(value).map(|size| CowSpec::Tmpfs { size })
}

/// TOML values become the words the command line would have carried.
fn toml_to_word(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(if *b { "1" } else { "0" }.to_string()),
        toml::Value::Array(items) => {
            let words: Option<Vec<String>> = items.iter().map(toml_to_word).collect();
            words.map(|w| w.join(","))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vfield_words() {
        let s = resolve(
            "viver.vfield=10.77.0.1:6881,10.77.0.9:7000 viver.vfield.store=64 viver.vfield.replicas=3 \
             viver.vfield.seed=http://nas-1.lan:8080/img/deb.squashfs,http://10.0.0.5/deb.squashfs",
            &[],
        );
        assert_eq!(s.vfield, Some(vec!["10.77.0.1:6881".parse().unwrap(), "10.77.0.9:7000".parse().unwrap()]));
        assert_eq!((s.vfield_store, s.vfield_replicas), (Some(64), 3));
        assert_eq!(s.vfield_seeds, ["http://nas-1.lan:8080/img/deb.squashfs", "http://10.0.0.5/deb.squashfs"]);
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        // The later word wins: the server's script names a peer, the user turns it off.
        assert_eq!(resolve("viver.vfield=10.77.0.1:6881 viver.vfield=off", &[]).vfield, None);
        let bad = resolve("viver.vfield=10.77.0.1 viver.vfield.store=0 viver.vfield.replicas=99 viver.vfield.seed=ftp://x/y", &[]);
        assert_eq!(bad.problems.len(), 4, "{:?}", bad.problems);
        assert_eq!((bad.vfield, bad.vfield_store, bad.vfield_replicas), (None, None, 2));
        assert!(bad.vfield_seeds.is_empty());
    }

    #[test]
    fn vfield_disk_is_a_device_named_on_the_command_line() {
        assert_eq!(resolve("viver.vfield.disk=/dev/vdb", &[]).vfield_disk.as_deref(), Some("/dev/vdb"));
        for bad in ["viver.vfield.disk=vdb", "viver.vfield.disk=/etc/passwd", "viver.vfield.disk=/dev/../etc/x", "viver.vfield.disk="] {
            let s = resolve(bad, &[]);
            assert_eq!((s.vfield_disk, s.problems.len()), (None, 1), "{bad}");
        }
        assert!(NOT_FROM_MEDIA.iter().any(|(key, _)| *key == "vfield.disk"));
    }

    #[test]
    fn vfield_record_words() {
        assert_eq!(resolve("viver.vfield.record", &[]).vfield_record, Some(DEFAULT_RECORD_SECONDS));
        assert_eq!(resolve("viver.vfield.record=30", &[]).vfield_record, Some(30));
        assert_eq!(resolve("viver.vfield.record=30 viver.vfield.record=off", &[]).vfield_record, None);
        let bad = resolve("viver.vfield.record=soon", &[]);
        assert_eq!((bad.vfield_record, bad.problems.len()), (None, 1), "{:?}", bad.problems);
    }

    #[test]
    fn network_boot_words() {
        let s = resolve(
            "viver.net=http://10.77.0.1:80/image/deb.squashfs BOOTIF=01-52-54-00-AA-00-01 viver.net.timeout=12 viver.net.fill \
             viver.dhcp=proxy viver.dhcp.range=10.0.0.100-10.0.0.150",
            &[],
        );
        assert_eq!(s.net.as_deref(), Some("http://10.77.0.1:80/image/deb.squashfs"));
        assert_eq!(s.bootif.as_deref(), Some("52:54:00:aa:00:01"));
        assert_eq!(s.net_timeout, Duration::from_secs(12));
        assert!(s.net_fill);
        assert_eq!(s.dhcp, "proxy");
        assert_eq!(s.dhcp_range.as_deref(), Some("10.0.0.100-10.0.0.150"));
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        let bad = resolve("viver.net=ftp://x/y BOOTIF=02-aa viver.dhcp=loud viver.dhcp.range=10.0.0.9-10.0.0.1", &[]);
        assert!(bad.net.is_none() && bad.bootif.is_none() && bad.dhcp == "auto" && bad.dhcp_range.is_none());
        assert_eq!(bad.problems.len(), 4, "{:?}", bad.problems);
    }

    fn resolve(line: &str, confs: &[&str]) -> Settings {
        let confs: Vec<ConfFile> = confs
            .iter()
            .enumerate()
            .map(|(i, t)| ConfFile { origin: format!("conf{i}"), text: t.to_string(), source: ConfSource::Initrd })
            .collect();
        Settings::resolve(&Cmdline::parse(line), &confs)
    }

    #[test]
    fn defaults_when_nothing_is_said() {
        let s = resolve("BOOT_IMAGE=/boot/vmlinuz ro console=ttyS0", &[]);
        assert_eq!(s.cow, CowSpec::Tmpfs { size: "50%".into() });
        assert_eq!(s.timeout, Duration::from_secs(60));
        assert!(s.parallel && !s.toram && s.image.is_none());
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        assert!(s.module_params.is_empty());
    }

    #[test]
    fn command_line_wins_over_config() {
        let s = resolve(
            "viver.image=web viver.timeout=5",
            &["image = \"desk\"\ntimeout = 30\ntoram = true\nmodules = [\"e1000e\", \"r8169\"]\nmedia = \"usb,hdd\""],
        );
        assert_eq!(s.image.as_deref(), Some("web"));
        assert_eq!(s.timeout, Duration::from_secs(5));
        assert!(s.toram);
        assert_eq!(s.modules, vec!["e1000e", "r8169"]);
        assert_eq!(s.media.as_deref(), Some("usb,hdd"));
    }

    #[test]
    fn field_conventions_are_honoured() {
        let s = resolve(
            "quiet init=/bin/bash modprobe.blacklist=floppy,pcspkr rd.driver.pre=dm-mod usb-storage.delay_use=0 \
             i915.modeset=0 viver.toram=0 rd.break -- single",
            &[],
        );
        assert!(s.quiet);
        assert_eq!(s.init, Some(PathBuf::from("/bin/bash")));
        assert_eq!(s.blacklist, vec!["floppy", "pcspkr"]);
        assert_eq!(s.modules, vec!["dm_mod"]);
        assert_eq!(s.module_params.get("usb_storage").map(String::as_str), Some("delay_use=0"));
        assert_eq!(s.module_params.get("i915").map(String::as_str), Some("modeset=0"));
        assert!(!s.toram);
        assert_eq!(s.break_before, Some(Stage::SwitchRoot));
        assert_eq!(s.init_args, vec!["single"]);
    }

    #[test]
    fn cow_forms() {
        assert_eq!(parse_cow("2G"), Ok(CowSpec::Tmpfs { size: "2g".into() }));
        assert_eq!(parse_cow("tmpfs:25%"), Ok(CowSpec::Tmpfs { size: "25%".into() }));
        assert_eq!(parse_cow("none"), Ok(CowSpec::None));
        assert_eq!(parse_cow("LABEL=DATA:/cow"), Ok(CowSpec::Persistent { device: "LABEL=DATA".into(), dir: "/cow".into() }));
        assert_eq!(parse_cow("/dev/sdb1"), Ok(CowSpec::Persistent { device: "/dev/sdb1".into(), dir: "/viver-cow".into() }));
        for bad in ["2GG", "%", "/dev/", "LABEL=", "UUID=x:relative", "/dev/sda1:/../etc", "lots"] {
            assert!(parse_cow(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn junk_is_reported_and_defaults_kept() {
        let s = resolve(
            "viver.timeout=soon viver.panic=explode viver.cow=2GG viver.frobnicate=1 viver.image= viver.toram=maybe init=relative",
            &["this is not toml", "timeout = { a = 1 }"],
        );
        assert_eq!(s.timeout, Duration::from_secs(60));
        assert_eq!(s.panic, PanicPolicy::Shell);
        assert_eq!(s.cow, CowSpec::Tmpfs { size: "50%".into() });
        assert!(s.image.is_none() && !s.toram && s.init.is_none());
        assert_eq!(s.problems.len(), 9, "{:#?}", s.problems);
        assert!(s.problems.iter().any(|p| p.contains("viver.frobnicate") && p.contains("unknown setting")));
        assert!(s.problems.iter().any(|p| p.starts_with("conf0: not valid TOML")));
    }

    #[test]
    fn random_command_lines_and_confs_never_panic() {
        let pieces = [
            "viver.", "image", "media", "cow", "=", "\"", " ", "--", "tmpfs:", "%", "LABEL=", ":/", "..", "timeout", "1e308", "-1", "NaN",
            "panic", "break", "rd.break", "a.b", ".", "=", "[", "]", "{", "}", "\n", "toram", "\0", "é",
        ];
        let mut x: u64 = 0x2545F4914F6CDD1D;
        for _ in 0..5000 {
            let mut text = String::new();
            for _ in 0..(x % 24) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                text.push_str(pieces[(x % pieces.len() as u64) as usize]);
            }
            let (line, conf) = text.split_once('\n').unwrap_or((&text, ""));
            let confs = [
                ConfFile { origin: "random".into(), text: conf.to_string(), source: ConfSource::Initrd },
                ConfFile { origin: "stick".into(), text: conf.to_string(), source: stick() },
            ];
            let _ = Settings::resolve(&Cmdline::parse(line), &confs);
        }
    }

    fn stick() -> ConfSource {
        ConfSource::Medium { dev_path: "/dev/sdb1".into(), label: Some("STICK".into()), uuid: Some("1234-ABCD".into()) }
    }

    fn with_medium(line: &str, initrd: Option<&str>, medium: &str) -> Settings {
        let mut confs = vec![ConfFile { origin: "/dev/sdb1:/viver.conf".into(), text: medium.into(), source: stick() }];
        if let Some(text) = initrd {
            confs.push(ConfFile { origin: "initrd:/etc/viver.conf".into(), text: text.into(), source: ConfSource::Initrd });
        }
        Settings::resolve(&Cmdline::parse(line), &confs)
    }

    #[test]
    fn a_medium_may_tune_the_search_and_choose_the_image() {
        let s = with_medium(
            "",
            None,
            "timeout = 7\nsettle = 0.5\nmedia_wait = 0\nmodules = [\"vfat\"]\nimage = \"desk\"\nmedia = \"usb\"\ntoram = true\nverify = \"full\"\npanic = \"reboot\"",
        );
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        assert_eq!((s.timeout, s.settle, s.media_wait), (Duration::from_secs(7), Duration::from_millis(500), Duration::ZERO));
        assert_eq!(s.modules, vec!["vfat"]);
        assert_eq!((s.image.as_deref(), s.media.as_deref()), (Some("desk"), Some("usb")));
        assert!(s.toram && s.verify == Verify::Full && s.panic == PanicPolicy::Reboot);
        assert_eq!(s.origins.get("timeout").map(String::as_str), Some("/dev/sdb1:/viver.conf key timeout"));
    }

    #[test]
    fn a_medium_may_not_point_writes_at_another_device() {
        for other in ["LABEL=DATA", "/dev/sda1", "UUID=feed-beef:/cow", "LABEL=DATA:/viver-cow"] {
            let s = with_medium("", None, &format!("cow = \"{other}\""));
            assert_eq!(s.cow, CowSpec::Tmpfs { size: "50%".into() }, "{other} accepted");
            assert!(
                s.problems.iter().any(|p| p.contains("refused") && p.contains("another device") && p.contains("/dev/sdb1")),
                "{other}: {:?}",
                s.problems
            );
        }
        // On itself, by any of its names: pinned to its device path.
        for itself in ["LABEL=STICK:/keep", "UUID=1234-abcd:/keep", "/dev/sdb1:/keep"] {
            let s = with_medium("", None, &format!("cow = \"{itself}\""));
            assert_eq!(s.cow, CowSpec::Persistent { device: "/dev/sdb1".into(), dir: "/keep".into() }, "{itself}");
        }
        let s = with_medium("", None, "cow = \"tmpfs:1g\"");
        assert_eq!(s.cow, CowSpec::Tmpfs { size: "1g".into() });
        // The trusted sources may.
        let s = with_medium("viver.cow=LABEL=DATA", None, "cow = \"LABEL=OTHER\"");
        assert_eq!(s.cow, CowSpec::Persistent { device: "LABEL=DATA".into(), dir: "/viver-cow".into() });
        let s = with_medium("", Some("cow = \"LABEL=DATA\""), "");
        assert_eq!(s.cow, CowSpec::Persistent { device: "LABEL=DATA".into(), dir: "/viver-cow".into() });
    }

    #[test]
    fn a_medium_may_not_set_what_is_decided_before_it_is_read() {
        let s = with_medium("", None, "blacklist = [\"e1000\"]\nparallel = false\nbreak = \"image\"");
        assert!(s.blacklist.is_empty() && s.parallel && s.break_before.is_none());
        assert_eq!(s.problems.iter().filter(|p| p.contains("refused, a medium's viver.conf may not set")).count(), 3, "{:?}", s.problems);
    }

    #[test]
    fn the_initrd_and_the_command_line_win_over_a_medium() {
        let s = with_medium("viver.media_wait=2", Some("timeout = 20"), "timeout = 5\nmedia_wait = 9\nsettle = 1");
        assert_eq!(s.timeout, Duration::from_secs(20));
        assert_eq!(s.media_wait, Duration::from_secs(2));
        assert_eq!(s.settle, Duration::from_secs(1));
        assert_eq!(s.origins.get("timeout").map(String::as_str), Some("initrd:/etc/viver.conf key timeout"));
    }
}
