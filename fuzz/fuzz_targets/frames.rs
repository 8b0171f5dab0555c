//! Bytes from a client, cut into arbitrary pieces, through the WebSocket reader:
//! whatever arrives, it never panics, keeps only what it must, and every text it
//! hands on is a whole message within the limit.
#![no_main]

use hearth::server::reader::{Incoming, Reader};
use libfuzzer_sys::fuzz_target;

const MAX_MESSAGE: usize = 16 * 1024;

fuzz_target!(|data: &[u8]| {
    // The first byte says how the rest is cut: pieces of 1 to 256 bytes.
    let Some((&cut, wire)) = data.split_first() else {
        return;
    };
    let piece = usize::from(cut) + 1;
    let mut reader = Reader::new(&[], MAX_MESSAGE);
    for chunk in wire.chunks(piece) {
        reader.push(chunk);
        loop {
            match reader.take_buffered() {
                Ok(Some(received)) => {
                    if let Incoming::Text(text) = &received.incoming {
                        assert!(text.len() <= MAX_MESSAGE);
                    }
                }
                Ok(None) => break,
                // The connection would be closed here.
                Err(_) => return,
            }
        }
    }
});
