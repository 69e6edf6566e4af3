#![no_main]
//! cargo fuzz run boot_config: arbitrary text as the kernel command line and as a
//! viver.conf; settings must resolve (with problems listed), never panic.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (line, conf) = text.split_once('\n').unwrap_or((&text, ""));
    let cmdline = viver::cmdline::Cmdline::parse(line);
    let confs = [viver::boot::settings::ConfFile { origin: "fuzz".into(), text: conf.to_string() }];
    let _ = viver::boot::settings::Settings::resolve(&cmdline, &confs);
});
