//! What a stored text may be: bounded, since a name or value is copied into every message and
//! an unbounded one could exhaust ingest or Redis for every tenant; and free of NUL, which
//! Postgres's `text` cannot hold. A field past these is a 422 naming it.

use crate::error::FieldError;

/// A campaign's name, an API key's, a number's display name.
pub const NAME: usize = 200;
/// A template's name (Meta: 512).
pub const TEMPLATE_NAME: usize = 512;
/// A template's language code (`en_GB`, `zh_HK`; Meta's longest is 6, 15 leaves room).
pub const LANGUAGE: usize = 15;
/// A template variable's value (Meta: 1,024 characters).
pub const VALUE: usize = 1024;
/// Meta's ids (`phone_number_id`, `waba_id`): digits only.
pub const ID_DIGITS: usize = 20;
/// A business portfolio's id as the tenant names it.
pub const PORTFOLIO: usize = 64;
/// A suppression's reason.
pub const NOTE: usize = 1000;
/// An access token (Meta's are a few hundred characters).
pub const TOKEN: usize = 4096;
/// A template status filter (`APPROVED`, …).
pub const STATUS: usize = 32;

/// `value` has at most `max` characters and no NUL.
pub fn text(field: &str, value: &str, max: usize) -> Result<(), FieldError> {
    if value.contains('\0') {
        return Err(FieldError::new(field, "must not contain NUL (\\u0000)"));
    }
    if value.chars().count() > max {
        return Err(FieldError::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    Ok(())
}

/// `value` is 1 to `max` ASCII digits (after trimming).
pub fn digits(field: &str, value: &str, max: usize) -> Result<(), FieldError> {
    let value = value.trim();
    if value.is_empty() || value.len() > max || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FieldError::new(field, format!("must be 1 to {max} digits")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_bounded_in_characters_and_free_of_nul() {
        assert!(text("name", "Spring sale", NAME).is_ok());
        assert!(text("name", &"é".repeat(NAME), NAME).is_ok());
        let long = text("name", &"x".repeat(NAME + 1), NAME).unwrap_err();
        assert_eq!(
            (long.field.as_str(), long.reason.as_str()),
            ("name", "must be at most 200 characters")
        );
        assert!(
            text("name", "a\0b", NAME)
                .unwrap_err()
                .reason
                .contains("NUL")
        );
        assert!(digits("waba_id", " 102290129340398 ", ID_DIGITS).is_ok());
        for bad in ["", "w1", "12a", "123456789012345678901", "1\u{0}"] {
            assert!(digits("waba_id", bad, ID_DIGITS).is_err(), "{bad:?}");
        }
    }
}
