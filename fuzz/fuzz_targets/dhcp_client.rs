#![no_main]
//! cargo fuzz run dhcp_client: the node's DHCP client state machine fed arbitrary
//! replies. The input is split at "\n--\n" into datagrams; each is given once as is and
//! once with the client's xid and MAC patched in (so it is not dropped as someone else's
//! and reaches the OFFER/ACK/NAK rules), with time moving on and timeouts between.
//! Any action is fine; a panic, or a Bound lease without an address, is not.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    use std::time::Duration;
    use viver::net::dhcp::client::{Action, Client};
    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const XID: u32 = 0x1234_5678;
    let mut client = Client::new(MAC, XID, Duration::from_secs(30));
    let _ = client.start();
    let mut now = Duration::ZERO;
    let check = |action: Action| {
        if let Action::Bound(lease) = action {
            assert!(!lease.address.is_unspecified(), "bound to 0.0.0.0");
        }
    };
    let mut rest = data;
    loop {
        let (datagram, tail) = match rest.windows(4).position(|w| w == b"\n--\n") {
            Some(i) => (&rest[..i], Some(&rest[i + 4..])),
            None => (rest, None),
        };
        now += Duration::from_millis(300);
        check(client.on_packet(datagram, now));
        let mut patched = datagram.to_vec();
        if patched.len() >= 34 {
            patched[4..8].copy_from_slice(&XID.to_be_bytes());
            patched[28..34].copy_from_slice(&MAC);
        }
        check(client.on_packet(&patched, now));
        now += Duration::from_millis(700);
        check(client.on_timeout(now));
        match tail {
            Some(t) => rest = t,
            None => break,
        }
    }
});
