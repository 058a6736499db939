//! Who a suppression is about. Meta names users by their WhatsApp ID (`wa_id`: digits) and
//! that can differ from the E.164 number a campaign was given: Mexico's mobiles keep an old
//! `1` after the country code (`521…`), Brazil's may lack the ninth digit. A suppression is
//! kept under one canonical form, and matched against every form of a recipient.

/// The canonical E.164 form of a number written as digits or `+digits`: Mexico's `+521` and
/// 10 digits becomes `+52` and the 10; a Brazilian mobile of 8 local digits gets its ninth.
pub fn key(phone: &str) -> String {
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    if digits.len() == 13 && digits.starts_with("521") {
        return format!("+52{}", &digits[3..]);
    }
    if digits.len() == 12
        && digits.starts_with("55")
        && matches!(&digits[4..5], "6" | "7" | "8" | "9")
    {
        return format!("+55{}9{}", &digits[2..4], &digits[4..]);
    }
    format!("+{digits}")
}

/// Every form a recipient with canonical `key` may have been stored as.
pub fn forms(key: &str) -> Vec<String> {
    let mut forms = vec![key.to_owned()];
    let digits = key.trim_start_matches('+');
    if digits.len() == 12 && digits.starts_with("52") {
        forms.push(format!("+521{}", &digits[2..]));
    }
    if digits.len() == 13 && digits.starts_with("55") && &digits[4..5] == "9" {
        forms.push(format!("+55{}{}", &digits[2..4], &digits[5..]));
    }
    forms
}

/// After suppression changes are committed: every sender hears of them (within a second it
/// stops sending to those recipients), and the tenant's messages to them not yet fanned out
/// become `suppressed` now. A failure is logged and does not undo the change: senders that
/// missed it read it from Postgres when they start.
pub async fn propagate(
    pool: &sqlx::PgPool,
    redis: &mut crate::stream::Connection,
    keys: &crate::stream::Keys,
    changes: &[crate::stream::suppressions::Announced],
) {
    if changes.is_empty() {
        return;
    }
    if let Err(e) = crate::stream::suppressions::announce(redis, keys, changes).await {
        tracing::error!(error = %e, "cannot announce suppressions to the senders");
    }
    for change in changes.iter().filter(|c| c.active) {
        if let Err(e) = suppress_pending(pool, change.tenant, &change.key).await {
            tracing::error!(error = %e, "cannot suppress pending messages");
        }
    }
}

async fn suppress_pending(
    pool: &sqlx::PgPool,
    tenant: crate::domain::TenantId,
    key: &str,
) -> sqlx::Result<()> {
    use crate::db::transitions::{self, Transition};
    let pending = crate::db::suppressions::pending_to(pool, tenant, &forms(key)).await?;
    if pending.is_empty() {
        return Ok(());
    }
    let now = chrono::Utc::now();
    let batch: Vec<Transition> = pending
        .iter()
        .map(|m| Transition::to(*m, crate::domain::MessageStatus::Suppressed, now))
        .collect();
    transitions::apply(pool, &batch).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whatsapp_ids_and_e164_numbers_meet_in_one_key() {
        // Mexico: the wa_id keeps the old mobile `1`.
        assert_eq!(key("5215512345678"), "+525512345678");
        assert_eq!(key("+52 55 1234 5678"), "+525512345678");
        // Brazil: a wa_id without the ninth digit.
        assert_eq!(key("551187654321"), "+5511987654321");
        assert_eq!(key("+5511987654321"), "+5511987654321");
        // A Brazilian landline (local number starting 2-5) has no ninth digit.
        assert_eq!(key("551133334444"), "+551133334444");
        assert_eq!(key("447400123456"), "+447400123456");
        assert_eq!(forms("+525512345678"), ["+525512345678", "+5215512345678"]);
        assert_eq!(forms("+5511987654321"), ["+5511987654321", "+551187654321"]);
        for phone in ["+5215512345678", "+551187654321", "+447400123456"] {
            assert!(forms(&key(phone)).contains(&phone.to_owned()), "{phone}");
        }
    }
}
