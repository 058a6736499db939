//! A campaign's audience as rows arrive: each recipient's template (by weight, by a hash of
//! the phone, so the same person always gets the same one), sender number and values, checked.

use herald_shared::db::messages::NewMessage;
use herald_shared::db::templates::CampaignTemplate;
use herald_shared::domain::{NumberId, PhoneNumber};
use herald_shared::hash::fnv1a;
use herald_shared::template::Values;

use crate::error::FieldError;

/// The campaign's templates and sender numbers.
pub struct Mix {
    templates: Vec<CampaignTemplate>,
    /// Running sums of the weights: template `i` takes hashes below `bounds[i]`.
    bounds: Vec<u64>,
    numbers: Vec<NumberId>,
}

/// A row refused, and why.
pub struct Refusal {
    pub field: String,
    pub reason: String,
}

impl Mix {
    pub fn new(templates: Vec<CampaignTemplate>, numbers: Vec<NumberId>) -> Self {
        let mut total = 0u64;
        let bounds = templates
            .iter()
            .map(|t| {
                total += t.weight.max(1) as u64;
                total
            })
            .collect();
        Self {
            templates,
            bounds,
            numbers,
        }
    }

    /// The template recipient `phone` gets: in proportion to the weights, the same for the
    /// same phone on every upload.
    pub fn template_for(&self, phone: &PhoneNumber) -> &CampaignTemplate {
        let total = *self.bounds.last().expect("a campaign has a template");
        // A second, independent hash: the number is picked by `fnv1a` modulo the pool.
        let h = fmix64(fnv1a(phone.as_str()) ^ 0x9e37_79b9_7f4a_7c15);
        let bucket = ((h >> 32) * total) >> 32;
        let i = self.bounds.partition_point(|b| *b <= bucket);
        &self.templates[i]
    }

    /// The sender number of `phone`: a stable hash, so a recipient always hears from the
    /// same number of the campaign.
    pub fn number_for(&self, phone: &PhoneNumber) -> NumberId {
        self.numbers[fnv1a(phone.as_str()) as usize % self.numbers.len()]
    }

    /// Every key the campaign's templates take, each once.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = Vec::new();
        for t in &self.templates {
            for slot in t.spec.slots() {
                if !keys.contains(&slot.key) {
                    keys.push(slot.key);
                }
            }
        }
        keys
    }

    /// Whether any of the campaign's templates takes `key`.
    pub fn takes(&self, key: &str) -> bool {
        self.templates
            .iter()
            .any(|t| t.spec.slots().iter().any(|s| s.key == key))
    }

    /// The message for a row, or why it is refused (its first problem).
    pub fn message(&self, phone: PhoneNumber, values: Values) -> Result<NewMessage, Refusal> {
        let template = self.template_for(&phone);
        let problems = template
            .spec
            .check(&values, &template.fixed, &|k| self.takes(k));
        if let Some((key, reason)) = problems.into_iter().next() {
            let whose = match template.message {
                Some(_) => format!(
                    "the {} message takes {{{{1}}}} to {{{{n}}}} as body.1 to body.n",
                    template.name
                ),
                None => format!("template {}", template.name),
            };
            return Err(Refusal {
                field: key,
                reason: format!("{reason} ({whose})"),
            });
        }
        Ok(NewMessage {
            number: self.number_for(&phone),
            template: template.position,
            recipient: phone.as_str().to_owned(),
            variables: serde_json::to_value(&values).expect("values are strings"),
        })
    }

    /// The keys some `used` template needs that neither `columns` nor the campaign's fixed
    /// values give: an upload without them cannot fill a single message of that template.
    pub fn missing(
        &self,
        columns: &dyn Fn(&str) -> bool,
        used: &dyn Fn(i16) -> bool,
    ) -> Vec<FieldError> {
        let mut missing = Vec::new();
        for t in self.templates.iter().filter(|t| used(t.position)) {
            for slot in t.spec.slots() {
                if slot.required && t.fixed.get(&slot.key).is_none() && !columns(&slot.key) {
                    missing.push(FieldError {
                        row: None,
                        field: slot.key.clone(),
                        reason: format!(
                            "is required by template {} ({}) and neither the upload nor the campaign's values give it",
                            t.name, t.language
                        ),
                    });
                }
            }
        }
        missing
    }
}

/// MurmurHash3's 64-bit finaliser: every input bit moves every output bit.
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(position: i16, weight: i32) -> CampaignTemplate {
        CampaignTemplate {
            weight,
            position,
            ..CampaignTemplate::only(&format!("t{position}"), "en", 0)
        }
    }

    #[test]
    fn recipients_are_shared_in_proportion_to_the_weights_the_same_way_every_time() {
        let mix = Mix::new(
            vec![template(0, 50), template(1, 30), template(2, 20)],
            vec![NumberId::new()],
        );
        let mut counts = [0usize; 3];
        for i in 0..100_000 {
            let phone = PhoneNumber::parse(&format!("+4474{i:08}")).unwrap();
            counts[mix.template_for(&phone).position as usize] += 1;
        }
        for (count, share) in counts.iter().zip([50.0, 30.0, 20.0]) {
            let got = *count as f64 / 1000.0;
            assert!((got - share).abs() < 1.0, "{counts:?}");
        }
        let phone = PhoneNumber::parse("+447400000042").unwrap();
        let first = mix.template_for(&phone).position;
        assert!((0..10).all(|_| mix.template_for(&phone).position == first));
    }
}
