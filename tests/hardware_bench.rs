//! Timings, not timed tests: run with
//! `cargo test --release --test hardware_bench -- --ignored --nocapture`.
//! Goals: ~100 modaliases resolved against Debian's full table in under 5 ms;
//! tables built from all ~4,000 modules faster than depmod on the same tree.

mod hardware_common;

use std::process::Command;
use std::time::Instant;
use viver::hardware::ModuleTables;

#[test]
#[ignore]
fn bench_resolve_and_build() {
    let reference = hardware_common::depmod_reference();
    let (tables, _) = ModuleTables::load(&reference).unwrap();
    let inputs: Vec<&str> = hardware_common::REAL.iter().copied().cycle().take(100).collect();
    // Warm up once, then take the best of 20 rounds.
    for a in &inputs {
        std::hint::black_box(tables.resolve(a));
    }
    let mut best = f64::MAX;
    for _ in 0..20 {
        let t = Instant::now();
        for a in &inputs {
            std::hint::black_box(tables.resolve(a));
        }
        best = best.min(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!("resolve: 100 modaliases against {} aliases in {best:.3} ms", tables.aliases().count());

    let t = Instant::now();
    let (load_again, _) = ModuleTables::load(&reference).unwrap();
    println!("load depmod text tables: {:.1} ms ({} modules)", t.elapsed().as_secs_f64() * 1000.0, load_again.modules().count());

    let release = hardware_common::release_dir();
    let mut ours = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let (built, _) = ModuleTables::build(&release).unwrap();
        std::hint::black_box(built.modules_dep_text());
        ours = ours.min(t.elapsed().as_secs_f64() * 1000.0);
    }
    let base = reference.parent().unwrap().parent().unwrap().parent().unwrap().to_path_buf();
    let mut depmod = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let st = Command::new("depmod").arg("-b").arg(&base).arg(hardware_common::release()).status().unwrap();
        assert!(st.success());
        depmod = depmod.min(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!("build tables from .ko files: ours {ours:.0} ms, depmod {depmod:.0} ms (best of 3, warm cache)");
}
