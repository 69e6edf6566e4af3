#![no_main]
//! cargo fuzz run verity_tree: a small image with its dm-verity tree built from the input,
//! then changed at places the input names (bytes flipped, the file cut short); the boot's
//! checks ([`VerityParams::validate`], [`VerityParams::check_tree`]) must refuse with an
//! error or accept, never panic, and an unchanged image must always pass.
use viver::image::verity::VerityParams;
use viver::image::verity_tree;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (head, rest) = data.split_at(8);
    let data_blocks = 1 + u64::from(head[0] % 4) * 70;
    let salt = &head[1..1 + usize::from(head[7] % 7)];
    let mut image = vec![0u8; (data_blocks * verity_tree::BLOCK) as usize];
    let len = image.len();
    for (i, b) in rest.iter().enumerate().take(len) {
        image[i * 7919 % len] = *b;
    }
    let Ok(tree) = verity_tree::build(&mut image.as_slice(), data_blocks, salt, [0; 16]) else { return };
    image.extend_from_slice(&tree.bytes);
    let params = VerityParams::of(&tree, salt);
    let check = |image: &[u8]| params.validate(image.len() as u64).is_ok() && params.check_tree(&mut std::io::Cursor::new(image), "fuzz").is_ok();
    assert!(check(&image), "a freshly built tree must pass");
    // Flip the bytes the input's pairs name (offsets from the tree's end, where the
    // superblock and top block are), then maybe cut the file short.
    for pair in rest.chunks_exact(3).take(8) {
        let back = usize::from(u16::from_le_bytes([pair[0], pair[1]])) % image.len();
        let at = image.len() - 1 - back;
        image[at] ^= pair[2];
    }
    if head[6] & 1 == 1 {
        image.truncate(image.len().saturating_sub(usize::from(head[5]) * 64));
    }
    let _ = check(&image);
    let _ = params.table("7:0");
});
