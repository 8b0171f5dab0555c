//! The rules for what people type: names, channel names and messages. The browser
//! checks them for instant feedback, the server again because the browser is
//! untrusted; both call these.

use super::{CHANNEL_NAME_MAX_CHARS, MESSAGE_MAX_CHARS, NAME_MAX_CHARS};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why a display name was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum NameError {
    #[error("Please enter a display name.")]
    Empty,
    #[error("Names can be at most {NAME_MAX_CHARS} characters.")]
    TooLong,
    #[error("Names cannot contain control or invisible characters.")]
    Invisible,
}

/// Why a channel name was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum ChannelNameError {
    #[error("Please enter a channel name.")]
    Empty,
    #[error("Channel names can be at most {CHANNEL_NAME_MAX_CHARS} characters.")]
    TooLong,
    #[error("Channel names may use letters, digits, spaces, '-', '_' and '.' only.")]
    BadCharacter,
}

/// Why a message text was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum MessageError {
    #[error("Messages cannot be empty.")]
    Empty,
    #[error("Messages can be at most {MESSAGE_MAX_CHARS} characters.")]
    TooLong,
    #[error("Messages cannot contain control characters.")]
    ControlCharacter,
}

/// Characters that draw nothing, or break the line, in a name: controls, Unicode's
/// Default_Ignorable_Code_Point (zero-width joiners and spaces, bidirectional
/// overrides, variation selectors, Hangul fillers, musical and shorthand format
/// controls, and whatever Unicode adds to it), and the line and paragraph
/// separators (Zl and Zp, one character each). Allowed in names they let one person
/// pass for another. (Blank look-alikes that Unicode does not call ignorable, such
/// as the empty braille cell, are the server's to catch: it keys names by their
/// confusable skeleton, in which they are spaces.)
pub fn is_invisible(c: char) -> bool {
    use icu_properties::props::{BinaryProperty, DefaultIgnorableCodePoint};
    // No printable ASCII character is ignorable: most names skip the table.
    if c.is_ascii() {
        return c.is_ascii_control();
    }
    c.is_control() || DefaultIgnorableCodePoint::for_char(c) || matches!(c, '\u{2028}' | '\u{2029}')
}

/// Trims a display name and checks it: 1 to 32 characters, nothing invisible.
pub fn validate_name(raw: &str) -> Result<String, NameError> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.chars().any(is_invisible) {
        return Err(NameError::Invisible);
    }
    if name.chars().count() > NAME_MAX_CHARS {
        return Err(NameError::TooLong);
    }
    Ok(name.to_owned())
}

/// Trims a channel name, collapses runs of spaces, and checks it.
pub fn validate_channel_name(raw: &str) -> Result<String, ChannelNameError> {
    let name = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    if name.is_empty() {
        return Err(ChannelNameError::Empty);
    }
    if !name
        .chars()
        .all(|c| (c.is_alphanumeric() && !is_invisible(c)) || matches!(c, ' ' | '-' | '_' | '.'))
    {
        return Err(ChannelNameError::BadCharacter);
    }
    if name.chars().count() > CHANNEL_NAME_MAX_CHARS {
        return Err(ChannelNameError::TooLong);
    }
    Ok(name)
}

/// The identity of a channel name: two names with the same key are the same channel.
/// Callers pass a name that [`validate_channel_name`] accepted. (The server also
/// refuses to create a channel that only looks like one that exists; that check
/// needs Unicode's tables, which stay out of the browser.)
pub fn channel_key(name: &str) -> String {
    name.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Checks a message text: not blank, at most 2,000 characters, and no control
/// characters other than newline and tab. Carriage returns are dropped first so
/// Windows line endings are not an error.
pub fn validate_message(raw: &str) -> Result<String, MessageError> {
    let text: String = raw.chars().filter(|&c| c != '\r').collect();
    let text = text.trim_end().to_owned();
    if text.trim().is_empty() {
        return Err(MessageError::Empty);
    }
    if text.chars().count() > MESSAGE_MAX_CHARS {
        return Err(MessageError::TooLong);
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(MessageError::ControlCharacter);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(validate_name("  Ada  ").unwrap(), "Ada");
        assert_eq!(validate_name("   "), Err(NameError::Empty));
        assert_eq!(validate_name(&"x".repeat(32)).unwrap().len(), 32);
        assert_eq!(validate_name(&"x".repeat(33)), Err(NameError::TooLong));
        // Characters, not bytes: 32 four-byte emoji are fine.
        assert!(validate_name(&"🔥".repeat(32)).is_ok());
    }

    #[test]
    fn names_cannot_hide_characters() {
        assert_eq!(validate_name("Ada\u{200B}"), Err(NameError::Invisible));
        assert_eq!(validate_name("\u{202E}adA"), Err(NameError::Invisible));
        assert_eq!(validate_name("A\nda"), Err(NameError::Invisible));
        assert!(validate_name("<script>alert(1)</script>").is_ok());
        // Default ignorable by Unicode's own table, beyond any list written here:
        // musical symbol beam and tie controls, shorthand format controls, the
        // Hangul filler, a variation selector, and a line separator.
        for hidden in [
            '\u{1D173}',
            '\u{1D17A}',
            '\u{1BCA0}',
            '\u{1BCA3}',
            '\u{3164}',
            '\u{FE0F}',
            '\u{E0041}',
            '\u{2028}',
        ] {
            assert_eq!(
                validate_name(&format!("A{hidden}da")),
                Err(NameError::Invisible),
                "U+{:04X}",
                hidden as u32
            );
        }
        // Letters of any script, emoji and ordinary spaces stay.
        for visible in ["Zoë", "Ли Ян", "🔥 Fire", "Ada\u{A0}Lovelace"] {
            assert!(validate_name(visible).is_ok(), "{visible:?}");
        }
    }

    #[test]
    fn channel_names_cannot_hide_characters_that_pass_for_letters() {
        // The Hangul filler is a letter that draws nothing.
        assert_eq!(
            validate_channel_name("General\u{3164}"),
            Err(ChannelNameError::BadCharacter)
        );
        assert_eq!(
            validate_channel_name("Gen\u{200B}eral"),
            Err(ChannelNameError::BadCharacter)
        );
    }

    #[test]
    fn channel_names_are_normalized_and_checked() {
        assert_eq!(
            validate_channel_name("  Rust   Talk ").unwrap(),
            "Rust Talk"
        );
        assert_eq!(validate_channel_name(""), Err(ChannelNameError::Empty));
        assert_eq!(
            validate_channel_name("a<b>"),
            Err(ChannelNameError::BadCharacter)
        );
        assert_eq!(
            validate_channel_name(&"c".repeat(41)),
            Err(ChannelNameError::TooLong)
        );
        assert!(validate_channel_name("café-2.0_beta").is_ok());
    }

    #[test]
    fn channel_keys_ignore_case_and_spacing() {
        assert_eq!(channel_key("General"), channel_key("  gENERAL "));
        assert_eq!(channel_key("Rust  Talk"), channel_key("rust talk"));
        assert_ne!(channel_key("rust"), channel_key("rusty"));
    }

    #[test]
    fn messages_are_checked() {
        assert_eq!(validate_message("hi\r\nthere\n").unwrap(), "hi\nthere");
        assert_eq!(validate_message(" \n\t "), Err(MessageError::Empty));
        assert!(validate_message(&"m".repeat(MESSAGE_MAX_CHARS)).is_ok());
        assert_eq!(
            validate_message(&"m".repeat(MESSAGE_MAX_CHARS + 1)),
            Err(MessageError::TooLong)
        );
        assert_eq!(
            validate_message("bell\u{7}"),
            Err(MessageError::ControlCharacter)
        );
    }
}
