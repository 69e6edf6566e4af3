#![no_main]
//! cargo fuzz run verity_tree: arbitrary bytes as an image with an appended dm-verity
//! tree, checked against parameters taken from the input's first bytes (block count,
//! salt, root hash); refused with an error or accepted, never a panic or a huge
//! allocation.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    use viver::image::verity::VerityParams;
    if data.len() < 40 {
        return;
    }
    let (head, image) = data.split_at(40);
    let data_blocks = u64::from(u16::from_le_bytes([head[0], head[1]]));
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let params = VerityParams {
        version: 1,
        algorithm: "sha256".into(),
        data_block_size: 4096,
        hash_block_size: 4096,
        data_blocks,
        hash_offset: data_blocks * 4096,
        root: hex(&head[8..40]),
        salt: hex(&head[2..2 + (head[7] as usize % 6)]),
    };
    let _ = params.validate(image.len() as u64);
    let _ = params.check_tree(&mut std::io::Cursor::new(image), "fuzz");
    let _ = params.table("7:0");
});
