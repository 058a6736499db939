//! Free-form messages (every type but `template`): their shapes and Meta's limits, the
//! recipient's variables written into them, and their send bodies. Meta sends them only inside
//! the user's 24-hour customer-service window.

use serde_json::{Value, json};

use crate::template::Values;

/// The message types other than `template`.
pub const FREE_FORM: &[&str] = &[
    "text",
    "image",
    "video",
    "audio",
    "document",
    "sticker",
    "interactive",
    "location",
    "contacts",
];

/// The customer-service window: a free-form message may reach a user this long after they
/// last wrote to the number.
pub const SERVICE_WINDOW_S: i64 = 24 * 3600;

/// Why a message was skipped, or failed with Meta's 131047: its user's window had closed.
pub const OUTSIDE_WINDOW: &str = "outside_window";

/// A failed message's title: Meta's, led by `outside_window` when the failure says the user's
/// window had closed (131047, or 470 from older APIs), the reason a skipped message gives.
pub fn failure_title(code: i64, title: &str) -> String {
    match code {
        131047 | 470 => format!("{OUTSIDE_WINDOW}: {title}"),
        _ => title.to_owned(),
    }
}

/// Most variables (`{{1}}` … `{{n}}`) one message takes.
pub const MAX_VARIABLES: usize = 20;

/// What is wrong with a message: the field (as Meta names it, `text.body`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub reason: String,
    /// A required field is absent (Meta says "Required parameter is missing").
    pub missing: bool,
}

fn missing<T>(field: impl Into<String>) -> Result<T, Problem> {
    Err(Problem {
        field: field.into(),
        reason: "is required".into(),
        missing: true,
    })
}

fn invalid<T>(field: impl Into<String>, reason: impl Into<String>) -> Result<T, Problem> {
    Err(Problem {
        field: field.into(),
        reason: reason.into(),
        missing: false,
    })
}

fn present(v: &Value) -> bool {
    v.as_str().is_some_and(|t| !t.trim().is_empty())
}

fn longer(v: &Value, most: usize) -> bool {
    v.as_str().is_some_and(|t| t.chars().count() > most)
}

/// Checks a free-form message's content (`{"body": …}` for `text`) against Meta's shapes
/// and limits.
pub fn check(kind: &str, m: &Value) -> Result<(), Problem> {
    if !FREE_FORM.contains(&kind) {
        return invalid("type", format!("{kind} is not a message type Herald sends"));
    }
    if !(m.is_object() || kind == "contacts" && m.is_array()) {
        return missing(kind);
    }
    match kind {
        "text" => {
            if !present(&m["body"]) {
                return missing("text.body");
            }
            if longer(&m["body"], 4096) {
                return invalid("text.body", "is longer than 4096 characters");
            }
            if !m["preview_url"].is_null() && !m["preview_url"].is_boolean() {
                return invalid("text.preview_url", "must be true or false");
            }
        }
        "image" | "video" | "audio" | "document" | "sticker" => {
            match (present(&m["id"]), present(&m["link"])) {
                (false, false) => return missing(format!("{kind}.id or {kind}.link")),
                (true, true) => return invalid(kind, "takes an id or a link, not both"),
                _ => {}
            }
            if !m["caption"].is_null() && matches!(kind, "audio" | "sticker") {
                return invalid(
                    format!("{kind}.caption"),
                    format!("is not allowed: an {kind} has no caption"),
                );
            }
            if longer(&m["caption"], 1024) {
                return invalid(format!("{kind}.caption"), "is longer than 1024 characters");
            }
            if !m["filename"].is_null() && kind != "document" {
                return invalid(format!("{kind}.filename"), "is for documents only");
            }
            if longer(&m["filename"], 240) {
                return invalid("document.filename", "is longer than 240 characters");
            }
        }
        "interactive" => interactive(m)?,
        "location" => {
            match m["latitude"].as_f64() {
                Some(lat) if (-90.0..=90.0).contains(&lat) => {}
                _ => return invalid("location.latitude", "must be a number from -90 to 90"),
            }
            match m["longitude"].as_f64() {
                Some(long) if (-180.0..=180.0).contains(&long) => {}
                _ => return invalid("location.longitude", "must be a number from -180 to 180"),
            }
        }
        _ => {
            let contacts = m.as_array().map_or(&[][..], Vec::as_slice);
            if contacts.is_empty() {
                return missing("contacts");
            }
            for (i, c) in contacts.iter().enumerate() {
                if !present(&c["name"]["formatted_name"]) {
                    return missing(format!("contacts[{i}].name.formatted_name"));
                }
            }
        }
    }
    Ok(())
}

fn interactive(m: &Value) -> Result<(), Problem> {
    if !present(&m["body"]["text"]) {
        return missing("interactive.body.text");
    }
    if longer(&m["body"]["text"], 1024) {
        return invalid("interactive.body.text", "is longer than 1024 characters");
    }
    if longer(&m["footer"]["text"], 60) {
        return invalid("interactive.footer.text", "is longer than 60 characters");
    }
    let action = &m["action"];
    match m["type"].as_str() {
        Some("button") => {
            let buttons = action["buttons"].as_array().map_or(&[][..], Vec::as_slice);
            if !(1..=3).contains(&buttons.len()) {
                return invalid("interactive.action.buttons", "takes 1 to 3 buttons");
            }
            let mut titles = Vec::new();
            for (i, b) in buttons.iter().enumerate() {
                let field = format!("interactive.action.buttons[{i}].reply");
                if b["type"] != "reply" || !present(&b["reply"]["id"]) {
                    return missing(format!("{field}.id"));
                }
                if longer(&b["reply"]["id"], 256) {
                    return invalid(format!("{field}.id"), "is longer than 256 characters");
                }
                let title = &b["reply"]["title"];
                if !present(title) || longer(title, 20) {
                    return invalid(format!("{field}.title"), "takes 1 to 20 characters");
                }
                if titles.contains(&title) {
                    return invalid(format!("{field}.title"), "is the title of another button");
                }
                titles.push(title);
            }
        }
        Some("list") => {
            if !present(&action["button"]) || longer(&action["button"], 20) {
                return invalid("interactive.action.button", "takes 1 to 20 characters");
            }
            let sections = action["sections"].as_array().map_or(&[][..], Vec::as_slice);
            let rows: Vec<&Value> = sections
                .iter()
                .flat_map(|s| s["rows"].as_array().into_iter().flatten())
                .collect();
            if !(1..=10).contains(&sections.len()) || !(1..=10).contains(&rows.len()) {
                return invalid(
                    "interactive.action.sections",
                    "take 1 to 10 sections and 1 to 10 rows in all",
                );
            }
            for row in rows {
                if !present(&row["id"]) || !present(&row["title"]) {
                    return missing("interactive.action.sections[].rows[].id and title");
                }
                if longer(&row["title"], 24) {
                    return invalid(
                        "interactive.action.sections[].rows[].title",
                        "is longer than 24 characters",
                    );
                }
                if longer(&row["description"], 72) {
                    return invalid(
                        "interactive.action.sections[].rows[].description",
                        "is longer than 72 characters",
                    );
                }
            }
        }
        Some("cta_url") => {
            let p = &action["parameters"];
            if action["name"] != "cta_url" || !present(&p["url"]) {
                return missing("interactive.action.parameters.url");
            }
            if !present(&p["display_text"]) || longer(&p["display_text"], 20) {
                return invalid(
                    "interactive.action.parameters.display_text",
                    "takes 1 to 20 characters",
                );
            }
        }
        _ => return invalid("interactive.type", "must be button, list or cta_url"),
    }
    Ok(())
}

/// Every `{{…}}` in the message's strings; `Err` names one that is not `{{1}}` … `{{20}}`.
/// Returns the highest variable (the count the recipients must give).
pub fn variables(m: &Value) -> Result<usize, Problem> {
    let mut highest = 0;
    let mut strings = Vec::new();
    collect_strings(m, &mut strings);
    for s in strings {
        let mut rest = s;
        while let Some(start) = rest.find("{{") {
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else { break };
            let name = after[..end].trim();
            match name.parse::<usize>() {
                Ok(n) if (1..=MAX_VARIABLES).contains(&n) => highest = highest.max(n),
                _ => {
                    return invalid(
                        "message",
                        format!(
                            "{{{{{name}}}}} is no variable: write {{{{1}}}} to {{{{{MAX_VARIABLES}}}}}"
                        ),
                    );
                }
            }
            rest = &after[end + 2..];
        }
    }
    Ok(highest)
}

fn collect_strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|i| collect_strings(i, out)),
        Value::Object(map) => map.values().for_each(|i| collect_strings(i, out)),
        _ => {}
    }
}

/// The message with each `{{n}}` replaced by the recipient's value `body.n` (a variable they
/// lack stays as written).
pub fn render(m: &Value, values: &Values) -> Value {
    match m {
        Value::String(s) if s.contains("{{") => {
            let mut out = String::with_capacity(s.len());
            let mut rest = s.as_str();
            while let Some(start) = rest.find("{{") {
                out.push_str(&rest[..start]);
                let after = &rest[start + 2..];
                let Some(end) = after.find("}}") else {
                    rest = &rest[start..];
                    break;
                };
                let key = format!("body.{}", after[..end].trim());
                match values.get(&key) {
                    Some(value) => out.push_str(value),
                    None => out.push_str(&rest[start..start + 2 + end + 2]),
                }
                rest = &after[end + 2..];
            }
            out.push_str(rest);
            Value::String(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(|i| render(i, values)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), render(v, values)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The send body of a free-form message of `kind` to `to`, tagged with Herald's message id.
pub fn body(to: &str, kind: &str, rendered: Value, callback: &str) -> Value {
    json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": kind,
        kind: rendered,
        "biz_opaque_callback_data": callback,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_counted_and_written_in_every_string() {
        let m = json!({"type": "button", "body": {"text": "Hi {{1}}, {{2}} off"},
            "action": {"buttons": [{"type": "reply", "reply": {"id": "b", "title": "{{3}}"}}]}});
        assert_eq!(variables(&m), Ok(3));
        let values = Values::positional(&["Ann", "5%"]);
        let rendered = render(&m, &values);
        assert_eq!(rendered["body"]["text"], "Hi Ann, 5% off");
        assert_eq!(rendered["action"]["buttons"][0]["reply"]["title"], "{{3}}");
        assert_eq!(variables(&json!({"body": "no variables"})), Ok(0));
        assert!(variables(&json!({"body": "Hi {{name}}"})).is_err());
        assert!(variables(&json!({"body": "Hi {{21}}"})).is_err());
    }

    #[test]
    fn limits_are_meta_s() {
        assert!(check("text", &json!({"body": "x".repeat(4096)})).is_ok());
        let long = check("text", &json!({"body": "x".repeat(4097)})).unwrap_err();
        assert_eq!(long.field, "text.body");
        assert!(check("reaction", &json!({})).is_err());
        assert!(check("document", &json!({"id": "1", "filename": "a.pdf"})).is_ok());
        assert!(check("image", &json!({"id": "1", "filename": "a.pdf"})).is_err());
    }
}
