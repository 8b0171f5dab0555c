//! Text from a client through the frame decoder and the input rules: any text is
//! either refused or read as a frame whose fields the rules then accept or refuse,
//! never a panic; and a frame that was read writes back as the same frame.
#![no_main]

use hearth::protocol::{ClientFrame, validate_channel_name, validate_message, validate_name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(frame) = serde_json::from_str::<ClientFrame>(text) else {
        return;
    };
    match &frame {
        ClientFrame::Hello { name, .. } => {
            if let Ok(name) = validate_name(name) {
                assert_eq!(validate_name(&name).as_deref(), Ok(name.as_str()));
            }
        }
        ClientFrame::Join { channel, .. } => {
            if let Ok(channel) = validate_channel_name(channel) {
                assert_eq!(validate_channel_name(&channel).as_deref(), Ok(channel.as_str()));
            }
        }
        ClientFrame::Send { channel, text, .. } => {
            let _ = validate_channel_name(channel);
            if let Ok(text) = validate_message(text) {
                assert_eq!(validate_message(&text).as_deref(), Ok(text.as_str()));
            }
        }
        ClientFrame::Leave => {}
    }
    let again = serde_json::to_string(&frame).expect("frames serialize");
    assert_eq!(serde_json::from_str::<ClientFrame>(&again).ok(), Some(frame));
});
