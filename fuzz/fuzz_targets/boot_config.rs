#![no_main]
//! cargo fuzz run boot_config: arbitrary text as the kernel command line and as a
//! viver.conf (the initrd's and a medium's); settings must resolve (with problems listed), never panic.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (line, conf) = text.split_once('\n').unwrap_or((&text, ""));
    let cmdline = viver::cmdline::Cmdline::parse(line);
    use viver::boot::settings::{ConfFile, ConfSource};
    // The same text as the initrd's file and as a stranger's stick's (the medium rules).
    let stick = ConfSource::Medium { dev_path: "/dev/sdb1".into(), label: Some("STICK".into()), uuid: None };
    let confs = [
        ConfFile { origin: "fuzz".into(), text: conf.to_string(), source: ConfSource::Initrd },
        ConfFile { origin: "fuzz-stick".into(), text: conf.to_string(), source: stick },
    ];
    let _ = viver::boot::settings::Settings::resolve(&cmdline, &confs);
});
