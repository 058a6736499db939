//! What a template takes and how a send fills it (reference §1.3, §5.2).
//!
//! A synced template's components become a [`Spec`]: its parameter *slots*, each named by a
//! key that CSV headers and JSON uploads use:
//!
//! | key | fills |
//! | --- | --- |
//! | `header.1` / `header.<name>` | the text header's variable |
//! | `header.media` | an image, video or document header: a `https://` link or a media id |
//! | `header.filename` | a document header's file name (optional) |
//! | `body.1` … / `body.<name>` | the body's variables, positional or named |
//! | `button.<index>` | a URL button's suffix, a quick-reply payload (optional), a copy code |
//!
//! A recipient's [`Values`] (and the campaign's fixed ones) are checked against the slots and
//! rendered into the `components` of Meta's send body.

use std::collections::BTreeMap;

use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// The parameter slots of a template, from its Graph components.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<Header>,
    /// The body's parameter names: `1`, `2`, … for a positional template.
    #[serde(default)]
    pub body: Vec<String>,
    /// Named parameters (`parameter_format: NAMED`): sent with `parameter_name`.
    #[serde(default)]
    pub named: bool,
    #[serde(default)]
    pub buttons: Vec<Button>,
    /// Why Herald cannot send this template, when it cannot (a location header, a flow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsupported: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Header {
    /// A text header with one variable, named like the body's.
    Text {
        parameter: String,
    },
    Media {
        media: MediaKind,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    Image,
    Video,
    Document,
}

/// A button that takes a value at send time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Button {
    /// Its 0-based position among the template's buttons.
    pub index: u8,
    pub kind: ButtonKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ButtonKind {
    /// A URL with `{{1}}`: the suffix (also a one-time-password button's code).
    Url,
    /// The payload returned when tapped; without one Meta returns the button's text.
    QuickReply,
    /// The code a copy-code button copies.
    CopyCode,
}

impl ButtonKind {
    fn sub_type(self) -> &'static str {
        match self {
            ButtonKind::Url => "url",
            ButtonKind::QuickReply => "quick_reply",
            ButtonKind::CopyCode => "copy_code",
        }
    }
}

/// One value a send needs or may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub key: String,
    pub required: bool,
    pub kind: SlotKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotKind {
    Text,
    Media,
    FileName,
}

pub const MEDIA_KEY: &str = "header.media";
pub const FILENAME_KEY: &str = "header.filename";

impl Spec {
    /// The slots of a template whose Graph `components` and `parameter_format` are given.
    pub fn from_graph(parameter_format: Option<&str>, components: &[Value]) -> Self {
        let named = parameter_format.is_some_and(|f| f.eq_ignore_ascii_case("NAMED"));
        let mut spec = Spec {
            named,
            ..Spec::default()
        };
        for component in components {
            let kind = text(component, "type").to_ascii_uppercase();
            match kind.as_str() {
                "HEADER" => match text(component, "format").to_ascii_uppercase().as_str() {
                    "TEXT" => {
                        if let Some(parameter) =
                            variables(text(component, "text")).into_iter().next()
                        {
                            spec.header = Some(Header::Text { parameter });
                        }
                    }
                    "IMAGE" => {
                        spec.header = Some(Header::Media {
                            media: MediaKind::Image,
                        })
                    }
                    "VIDEO" => {
                        spec.header = Some(Header::Media {
                            media: MediaKind::Video,
                        })
                    }
                    "DOCUMENT" => {
                        spec.header = Some(Header::Media {
                            media: MediaKind::Document,
                        })
                    }
                    other => {
                        spec.unsupported = Some(format!("a {} header", other.to_lowercase()));
                    }
                },
                "BODY" => spec.body = variables(text(component, "text")),
                "BUTTONS" => {
                    let buttons = component.get("buttons").and_then(Value::as_array);
                    for (index, button) in buttons.into_iter().flatten().enumerate() {
                        let index = index as u8;
                        let kind = match text(button, "type").to_ascii_uppercase().as_str() {
                            "URL" if text(button, "url").contains("{{") => ButtonKind::Url,
                            "OTP" => ButtonKind::Url,
                            "QUICK_REPLY" => ButtonKind::QuickReply,
                            "COPY_CODE" => ButtonKind::CopyCode,
                            "FLOW" | "MPM" | "CATALOG" | "SPM" => {
                                spec.unsupported = Some(format!(
                                    "a {} button",
                                    text(button, "type").to_lowercase()
                                ));
                                continue;
                            }
                            _ => continue,
                        };
                        spec.buttons.push(Button { index, kind });
                    }
                }
                _ => {}
            }
        }
        spec
    }

    /// A template whose body takes `n` positional values and nothing else.
    pub fn positional_body(n: usize) -> Self {
        Self {
            body: (1..=n).map(|i| i.to_string()).collect(),
            ..Self::default()
        }
    }

    /// Every slot, in the order of the send body.
    pub fn slots(&self) -> Vec<Slot> {
        let mut slots = Vec::new();
        let slot = |key: String, required: bool, kind: SlotKind| Slot {
            key,
            required,
            kind,
        };
        match &self.header {
            Some(Header::Text { parameter }) => {
                slots.push(slot(format!("header.{parameter}"), true, SlotKind::Text));
            }
            Some(Header::Media { media }) => {
                slots.push(slot(MEDIA_KEY.into(), true, SlotKind::Media));
                if *media == MediaKind::Document {
                    slots.push(slot(FILENAME_KEY.into(), false, SlotKind::FileName));
                }
            }
            None => {}
        }
        for p in &self.body {
            slots.push(slot(format!("body.{p}"), true, SlotKind::Text));
        }
        for b in &self.buttons {
            let required = b.kind != ButtonKind::QuickReply;
            slots.push(slot(
                format!("button.{}", b.index),
                required,
                SlotKind::Text,
            ));
        }
        slots
    }

    /// How many values a send takes.
    pub fn variable_count(&self) -> usize {
        self.slots().len()
    }

    /// What is wrong with sending this template with `values` over `fixed` (the campaign's):
    /// `(key, reason)` per problem. Keys no slot takes are refused, so a misspelt column is
    /// not silently dropped, unless `others` (another template of the campaign) takes them.
    pub fn check(
        &self,
        values: &Values,
        fixed: &Values,
        others: &dyn Fn(&str) -> bool,
    ) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let slots = self.slots();
        for s in &slots {
            match values.get(&s.key).or_else(|| fixed.get(&s.key)) {
                None if s.required => problems.push((s.key.clone(), "is required".into())),
                None => {}
                Some(v) => {
                    if let Err(reason) = valid_value(s.kind, v) {
                        problems.push((s.key.clone(), reason));
                    }
                }
            }
        }
        for key in values.keys() {
            if !slots.iter().any(|s| s.key == key) && !others(key) {
                problems.push((key.to_owned(), "is not a parameter of the template".into()));
            }
        }
        problems
    }
}

/// The `{{…}}` variables of a text, in order of first appearance.
fn variables(text: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let name = after[..end].trim();
        if !name.is_empty() && !found.iter().any(|f| f == name) {
            found.push(name.to_owned());
        }
        rest = &after[end + 2..];
    }
    // Positional variables are sent in their numeric order, whatever the text's order.
    if found.iter().all(|f| f.parse::<u32>().is_ok()) {
        found.sort_by_key(|f| f.parse::<u32>().unwrap_or(0));
    }
    found
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// Meta refuses parameter text that is empty or holds a newline, a tab or more than four
/// consecutive spaces (reference §1.3); a media value is an `https://` (or `http://`) link or
/// a media id (digits).
pub fn valid_value(kind: SlotKind, v: &str) -> Result<(), String> {
    match kind {
        SlotKind::Text | SlotKind::FileName => {
            if v.is_empty() || v.contains(['\n', '\t', '\r']) || v.contains("     ") {
                Err("is empty or has a newline, a tab or more than 4 spaces in a row".into())
            } else if v.chars().count() > 1024 {
                Err("is longer than 1,024 characters".into())
            } else {
                Ok(())
            }
        }
        SlotKind::Media => {
            if is_link(v) || (!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())) {
                Ok(())
            } else {
                Err("must be an https:// link or a media id (digits)".into())
            }
        }
    }
}

fn is_link(v: &str) -> bool {
    (v.starts_with("https://") || v.starts_with("http://"))
        && v.len() > 8
        && !v.contains(char::is_whitespace)
}

/// Values by slot key. Reads a JSON object, or a JSON array as the body's positional values
/// (`["Ada", "25%"]` is `{"body.1": "Ada", "body.2": "25%"}`), the shape messages stored
/// before templates had other slots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Values(BTreeMap<String, String>);

impl Values {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.0.insert(key.into(), value.into());
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first key whose key or value holds a NUL (Postgres's text cannot) or whose value
    /// is longer than `max` characters, with why. The key comes escaped (`\0`), to be stored.
    pub fn problem(&self, max: usize) -> Option<(String, String)> {
        self.0.iter().find_map(|(key, value)| {
            let escaped = || key.escape_debug().to_string();
            if key.contains('\0') || value.contains('\0') {
                Some((escaped(), "must not contain NUL (\\u0000)".to_owned()))
            } else if value.chars().count() > max {
                Some((escaped(), format!("must be at most {max} characters")))
            } else {
                None
            }
        })
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Positional body values.
    pub fn positional<S: AsRef<str>>(body: &[S]) -> Self {
        Self(
            body.iter()
                .enumerate()
                .map(|(i, v)| (format!("body.{}", i + 1), v.as_ref().to_owned()))
                .collect(),
        )
    }
}

impl FromIterator<(String, String)> for Values {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl Serialize for Values {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Values {
    /// Read straight from the input, as fan-out does for every message (an untagged enum
    /// would first buffer the whole value, then try each shape).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Shape;
        impl<'de> Visitor<'de> for Shape {
            type Value = Values;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of values, or an array of the body's values")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Values, A::Error> {
                let mut values = BTreeMap::new();
                while let Some((key, Scalar(text))) = map.next_entry::<String, Scalar>()? {
                    values.insert(key, text);
                }
                Ok(Values(values))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Values, A::Error> {
                let mut values = BTreeMap::new();
                while let Some(Scalar(text)) = seq.next_element::<Scalar>()? {
                    values.insert(format!("body.{}", values.len() + 1), text);
                }
                Ok(Values(values))
            }
        }
        d.deserialize_any(Shape)
    }
}

/// A value's text: a string, or the text of a number or a boolean (`"body.2": 25` in an
/// upload is `"25"`).
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl Visitor<'_> for Text {
            type Value = Scalar;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string, a number or a boolean")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }

            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar(v))
            }

            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }

            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Scalar, E> {
                serde_json::Number::from_f64(v)
                    .map(|n| Scalar(n.to_string()))
                    .ok_or_else(|| E::custom("a number must be finite"))
            }
        }
        d.deserialize_any(Text)
    }
}

/// The body of a template send (`POST /{phone_number_id}/messages`), written straight to
/// JSON from borrowed parts: fan-out renders one per message.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Message<'a> {
    messaging_product: &'static str,
    recipient_type: &'static str,
    to: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    biz_opaque_callback_data: &'a str,
    template: Template<'a>,
}

#[derive(Debug, Clone, Copy, Serialize)]
struct Template<'a> {
    name: &'a str,
    language: Language<'a>,
    #[serde(skip_serializing_if = "Components::is_empty")]
    components: Components<'a>,
}

#[derive(Debug, Clone, Copy, Serialize)]
struct Language<'a> {
    code: &'a str,
}

/// The campaign's side of a send: which template, its slots and its fixed values.
#[derive(Debug, Clone, Copy)]
pub struct Filling<'a> {
    pub name: &'a str,
    pub language: &'a str,
    pub spec: &'a Spec,
    pub fixed: &'a Values,
}

impl<'a> Message<'a> {
    /// A send of `filling`'s template to `to` with the recipient's `values` (over the fixed
    /// ones), tagged with Herald's message id (`callback`) so that receipts can be matched
    /// even before the send is recorded.
    pub fn new(to: &'a str, filling: Filling<'a>, values: &'a Values, callback: &'a str) -> Self {
        Self {
            messaging_product: "whatsapp",
            recipient_type: "individual",
            to,
            kind: "template",
            biz_opaque_callback_data: callback,
            template: Template {
                name: filling.name,
                language: Language {
                    code: filling.language,
                },
                components: Components { filling, values },
            },
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Components<'a> {
    filling: Filling<'a>,
    values: &'a Values,
}

impl<'a> Components<'a> {
    fn value(&self, key: &str) -> Option<&'a str> {
        self.values.get(key).or_else(|| self.filling.fixed.get(key))
    }

    fn is_empty(&self) -> bool {
        let spec = self.filling.spec;
        spec.header.is_none()
            && spec.body.is_empty()
            && spec.buttons.iter().all(|b| self.button(b).is_none())
    }

    fn button(&self, b: &Button) -> Option<&'a str> {
        self.value(&format!("button.{}", b.index))
    }
}

impl Serialize for Components<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let spec = self.filling.spec;
        let named = spec.named;
        let mut seq = s.serialize_seq(None)?;
        match &spec.header {
            Some(Header::Text { parameter }) => {
                let text = self
                    .value(&format!("header.{parameter}"))
                    .unwrap_or_default();
                seq.serialize_element(&Component::Header {
                    parameters: vec![Parameter::Text {
                        text,
                        parameter_name: named.then_some(parameter.as_str()),
                    }],
                })?;
            }
            Some(Header::Media { media }) => {
                let value = self.value(MEDIA_KEY).unwrap_or_default();
                let (id, link) = if is_link(value) {
                    (None, Some(value))
                } else {
                    (Some(value), None)
                };
                let filename = match media {
                    MediaKind::Document => self.value(FILENAME_KEY),
                    _ => None,
                };
                let m = Media { id, link, filename };
                let parameter = match media {
                    MediaKind::Image => Parameter::Image { image: m },
                    MediaKind::Video => Parameter::Video { video: m },
                    MediaKind::Document => Parameter::Document { document: m },
                };
                seq.serialize_element(&Component::Header {
                    parameters: vec![parameter],
                })?;
            }
            None => {}
        }
        if !spec.body.is_empty() {
            let parameters = spec
                .body
                .iter()
                .map(|p| Parameter::Text {
                    text: self.value(&format!("body.{p}")).unwrap_or_default(),
                    parameter_name: named.then_some(p.as_str()),
                })
                .collect();
            seq.serialize_element(&Component::Body { parameters })?;
        }
        for b in &spec.buttons {
            let Some(value) = self.button(b) else {
                continue;
            };
            let parameter = match b.kind {
                ButtonKind::Url => Parameter::Text {
                    text: value,
                    parameter_name: None,
                },
                ButtonKind::QuickReply => Parameter::Payload { payload: value },
                ButtonKind::CopyCode => Parameter::CouponCode { coupon_code: value },
            };
            seq.serialize_element(&Component::Button {
                sub_type: b.kind.sub_type(),
                index: b.index.to_string(),
                parameters: vec![parameter],
            })?;
        }
        seq.end()
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Component<'a> {
    Header {
        parameters: Vec<Parameter<'a>>,
    },
    Body {
        parameters: Vec<Parameter<'a>>,
    },
    Button {
        sub_type: &'static str,
        index: String,
        parameters: Vec<Parameter<'a>>,
    },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Parameter<'a> {
    Text {
        #[serde(skip_serializing_if = "Option::is_none")]
        parameter_name: Option<&'a str>,
        text: &'a str,
    },
    Image {
        image: Media<'a>,
    },
    Video {
        video: Media<'a>,
    },
    Document {
        document: Media<'a>,
    },
    Payload {
        payload: &'a str,
    },
    CouponCode {
        coupon_code: &'a str,
    },
}

#[derive(Serialize)]
struct Media<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    filename: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spring_sale() -> Spec {
        Spec::from_graph(
            Some("POSITIONAL"),
            &[
                json!({"type": "HEADER", "format": "IMAGE"}),
                json!({"type": "BODY", "text": "Hi {{1}}, take {{2}} off until Sunday."}),
                json!({"type": "FOOTER", "text": "Tap Stop promotions to opt out"}),
                json!({"type": "BUTTONS", "buttons": [
                    {"type": "QUICK_REPLY", "text": "Stop promotions"},
                    {"type": "URL", "text": "Shop", "url": "https://shop.example/sale/{{1}}"}
                ]}),
            ],
        )
    }

    #[test]
    fn a_graph_template_gives_its_slots() {
        let keys: Vec<(String, bool)> = spring_sale()
            .slots()
            .into_iter()
            .map(|s| (s.key, s.required))
            .collect();
        assert_eq!(
            keys,
            [
                ("header.media".into(), true),
                ("body.1".into(), true),
                ("body.2".into(), true),
                ("button.0".into(), false),
                ("button.1".into(), true),
            ]
        );
        let named = Spec::from_graph(
            Some("NAMED"),
            &[
                json!({"type": "HEADER", "format": "TEXT", "text": "Hello {{first_name}}"}),
                json!({"type": "BODY", "text": "Order {{order_id}} for {{first_name}}"}),
                json!({"type": "BUTTONS", "buttons": [
                    {"type": "PHONE_NUMBER", "text": "Call", "phone_number": "+441"},
                    {"type": "URL", "text": "Static", "url": "https://x.example/"},
                    {"type": "COPY_CODE", "example": "SAVE10"}
                ]}),
            ],
        );
        let keys: Vec<String> = named.slots().into_iter().map(|s| s.key).collect();
        assert_eq!(
            keys,
            [
                "header.first_name",
                "body.order_id",
                "body.first_name",
                "button.2"
            ]
        );
        let location = Spec::from_graph(None, &[json!({"type": "HEADER", "format": "LOCATION"})]);
        assert_eq!(location.unsupported.as_deref(), Some("a location header"));
    }

    #[test]
    fn positional_variables_are_sent_in_number_order() {
        let spec = Spec::from_graph(None, &[json!({"type": "BODY", "text": "{{2}} then {{1}}"})]);
        assert_eq!(spec.body, ["1", "2"]);
    }

    #[test]
    fn values_are_checked_against_the_slots() {
        let spec = spring_sale();
        let mut values = Values::positional(&["Ada", "25%"]);
        values.insert("button.1", "SPRING-ADA");
        values.insert("colour", "red");
        let mut fixed = Values::default();
        fixed.insert("header.media", "not a link");
        let problems = spec.check(&values, &fixed, &|_| false);
        assert_eq!(
            problems,
            [
                (
                    "header.media".to_owned(),
                    "must be an https:// link or a media id (digits)".to_owned()
                ),
                (
                    "colour".to_owned(),
                    "is not a parameter of the template".to_owned()
                ),
            ]
        );
        let mut fixed = Values::default();
        fixed.insert("header.media", "https://cdn.example/banner.jpg");
        let values = Values::positional(&["Ada"]);
        assert_eq!(
            spec.check(&values, &fixed, &|_| false),
            [
                ("body.2".to_owned(), "is required".to_owned()),
                ("button.1".to_owned(), "is required".to_owned()),
            ]
        );
    }

    #[test]
    fn every_component_renders_in_metas_shape() {
        let spec = spring_sale();
        let mut fixed = Values::default();
        fixed.insert("header.media", "1480539276543210");
        fixed.insert("button.0", "optout:42");
        let mut values = Values::positional(&["Priya", "25%"]);
        values.insert("button.1", "SPRING26-PRIYA");
        let filling = Filling {
            name: "spring_sale_2026",
            language: "en_GB",
            spec: &spec,
            fixed: &fixed,
        };
        let body = Message::new("+447700900123", filling, &values, "7");
        assert_eq!(
            serde_json::to_value(body).unwrap(),
            json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": "+447700900123",
                "type": "template",
                "biz_opaque_callback_data": "7",
                "template": {
                    "name": "spring_sale_2026",
                    "language": {"code": "en_GB"},
                    "components": [
                        {"type": "header", "parameters": [
                            {"type": "image", "image": {"id": "1480539276543210"}}]},
                        {"type": "body", "parameters": [
                            {"type": "text", "text": "Priya"},
                            {"type": "text", "text": "25%"}]},
                        {"type": "button", "sub_type": "quick_reply", "index": "0",
                         "parameters": [{"type": "payload", "payload": "optout:42"}]},
                        {"type": "button", "sub_type": "url", "index": "1",
                         "parameters": [{"type": "text", "text": "SPRING26-PRIYA"}]}
                    ]
                }
            })
        );
    }

    #[test]
    fn named_parameters_carry_their_names_and_a_template_without_values_has_no_components() {
        let spec = Spec::from_graph(
            Some("NAMED"),
            &[json!({"type": "BODY", "text": "Hi {{first_name}}"})],
        );
        let values: Values = serde_json::from_value(json!({"body.first_name": "Ada"})).unwrap();
        let none = Values::default();
        let filling = Filling {
            name: "t",
            language: "en",
            spec: &spec,
            fixed: &none,
        };
        let json = serde_json::to_value(Message::new("+1", filling, &values, "1")).unwrap();
        assert_eq!(
            json["template"]["components"],
            json!([{"type": "body", "parameters": [
                {"type": "text", "parameter_name": "first_name", "text": "Ada"}]}])
        );
        let plain = Spec::default();
        let filling = Filling {
            spec: &plain,
            ..filling
        };
        let json = serde_json::to_value(Message::new("+1", filling, &none, "1")).unwrap();
        assert!(json["template"].get("components").is_none(), "{json}");
    }

    #[test]
    fn stored_lists_read_as_positional_body_values() {
        let v: Values = serde_json::from_value(json!(["Ada", 25])).unwrap();
        assert_eq!(v, Values::positional(&["Ada", "25"]));
        let eleven: Vec<String> = (1..=11).map(|i| i.to_string()).collect();
        let v: Values = serde_json::from_value(json!(eleven)).unwrap();
        assert_eq!(v.get("body.11"), Some("11"));
        assert_eq!(v.len(), 11);
    }

    #[test]
    fn values_read_strings_numbers_and_booleans_as_text_and_nothing_else() {
        let v: Values = serde_json::from_str(
            r#"{"body.1": "Ada", "body.2": 25, "body.3": -2.5, "body.4": true, "body.5": 18446744073709551615}"#,
        )
        .unwrap();
        let texts: Vec<(&str, &str)> = v.keys().map(|k| (k, v.get(k).unwrap())).collect();
        assert_eq!(
            texts,
            [
                ("body.1", "Ada"),
                ("body.2", "25"),
                ("body.3", "-2.5"),
                ("body.4", "true"),
                ("body.5", "18446744073709551615")
            ]
        );
        for bad in [
            r#"{"body.1": null}"#,
            r#"{"body.1": {"a": 1}}"#,
            r#"["a", ["b"]]"#,
            "7",
            r#""Ada""#,
        ] {
            assert!(serde_json::from_str::<Values>(bad).is_err(), "{bad}");
        }
    }
}
