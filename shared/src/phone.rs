//! A fast path for the commonest phone number there is in an upload, one already written
//! internationally (`+447400123456`, `+44 7400 123456`): the same validity rules as the
//! `phonenumber` crate (its metadata, its checks, in its order), with each region's patterns
//! compiled once and shared by every thread. The crate itself spends ~18 µs a number, most of
//! it parsing formats we do not have and taking a global lock around an LRU of 100 regexes.
//!
//! The fast path only ever says "valid, and this is its E.164"; anything it is unsure of (a
//! national prefix that the crate would strip, an extension, letters, an unknown country)
//! goes to the crate.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};

use phonenumber::metadata::{DATABASE, Descriptor, Metadata};
use regex::{Regex, RegexBuilder};

/// The E.164 form of `input` when it is international and valid; `None` when the fast path
/// cannot tell (the caller then asks the crate).
pub fn fast_e164(input: &str) -> Option<String> {
    let rest = input.strip_prefix('+')?;
    let mut digits = String::with_capacity(16);
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '(' | ')' | '.' => {}
            _ => return None,
        }
    }
    if !(7..=17).contains(&digits.len()) || digits.starts_with('0') {
        return None;
    }
    // The country calling code is the first prefix of one to three digits that is one.
    let (code, national) = (1..=3).find_map(|n| {
        let code: u16 = digits[..n].parse().ok()?;
        DATABASE.region(&code).map(|_| (code, &digits[n..]))
    })?;
    let rules = rules_for(code)?;
    // Which region's prefix the crate strips depends on its parsing: any is its call.
    if rules.regions.iter().any(|r| r.strips_prefix(national)) {
        return None;
    }
    if !rules.region_of(national)?.valid(national) {
        return None;
    }
    Some(format!("+{code}{national}"))
}

/// The regions sharing a calling code, in the crate's order.
struct CodeRules {
    regions: Vec<RegionRules>,
}

impl CodeRules {
    /// Which region's metadata a national number belongs to (the crate's `source_for`).
    fn region_of(&self, national: &str) -> Option<&RegionRules> {
        if self.regions.len() == 1 {
            return self.regions.first();
        }
        self.regions.iter().find(|r| match &r.leading_digits {
            Some(leading) => starts(leading, national),
            None => r.valid(national),
        })
    }
}

struct RegionRules {
    leading_digits: Option<Regex>,
    /// The national prefix the crate strips when parsing (e.g. the UK's trunk `0`):
    /// `national_prefix_for_parsing`, else the national prefix itself, as libphonenumber.
    national_prefix_for_parsing: Option<Regex>,
    general: Rule,
    /// Every number type the crate tries; a number is valid when one matches.
    types: Vec<Rule>,
}

impl RegionRules {
    fn valid(&self, national: &str) -> bool {
        self.general.matches(national) && self.types.iter().any(|t| t.matches(national))
    }

    fn strips_prefix(&self, national: &str) -> bool {
        self.national_prefix_for_parsing
            .as_ref()
            .is_some_and(|p| starts(p, national))
    }
}

/// A descriptor's pattern and lengths (the crate's `Descriptor::is_match`).
struct Rule {
    pattern: Regex,
    lengths: Vec<u16>,
}

impl Rule {
    fn new(d: &Descriptor) -> Option<Self> {
        Some(Self {
            pattern: compile(d.national_number().as_str())?,
            lengths: d.possible_length().to_vec(),
        })
    }

    fn matches(&self, value: &str) -> bool {
        (self.lengths.is_empty() || self.lengths.contains(&(value.len() as u16)))
            && starts(&self.pattern, value)
    }
}

/// A metadata pattern, compiled as the crate does (its patterns are laid out with spaces).
fn compile(pattern: &str) -> Option<Regex> {
    RegexBuilder::new(pattern)
        .ignore_whitespace(true)
        .build()
        .ok()
}

fn starts(pattern: &Regex, value: &str) -> bool {
    pattern.find(value).is_some_and(|m| m.start() == 0)
}

static RULES: LazyLock<RwLock<HashMap<u16, Option<Arc<CodeRules>>>>> =
    LazyLock::new(Default::default);

fn rules_for(code: u16) -> Option<Arc<CodeRules>> {
    if let Some(known) = RULES.read().expect("rules lock").get(&code) {
        return known.clone();
    }
    let built = build(code).map(Arc::new);
    RULES
        .write()
        .expect("rules lock")
        .insert(code, built.clone());
    built
}

fn build(code: u16) -> Option<CodeRules> {
    let ids = DATABASE.region(&code)?;
    let metas: Vec<&Metadata> = if ids.len() == 1 && ids[0] == "001" {
        DATABASE.by_code(&code)?.into_iter().take(1).collect()
    } else {
        ids.iter()
            .map(|id| DATABASE.by_id(*id))
            .collect::<Option<_>>()?
    };
    let regions = metas
        .into_iter()
        .map(|meta| {
            let d = meta.descriptors();
            // The crate's `number_type` order; any match makes the number valid.
            let types: Option<Vec<Rule>> = [
                d.premium_rate(),
                d.toll_free(),
                d.shared_cost(),
                d.voip(),
                d.personal_number(),
                d.pager(),
                d.uan(),
                d.voicemail(),
                d.fixed_line(),
                d.mobile(),
            ]
            .into_iter()
            .flatten()
            .map(Rule::new)
            .collect();
            Some(RegionRules {
                leading_digits: match meta.leading_digits() {
                    Some(l) => Some(compile(l.as_str())?),
                    None => None,
                },
                national_prefix_for_parsing: match (
                    meta.national_prefix_for_parsing(),
                    meta.national_prefix(),
                ) {
                    (Some(p), _) => Some(compile(p.as_str())?),
                    (None, Some(prefix)) => Some(compile(&regex::escape(prefix))?),
                    (None, None) => None,
                },
                general: Rule::new(d.general())?,
                types: types?,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(CodeRules { regions })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What the crate makes of an international number.
    fn slow(input: &str) -> Option<String> {
        let parsed = phonenumber::parse(None, input).ok()?;
        phonenumber::is_valid(&parsed)
            .then(|| parsed.format().mode(phonenumber::Mode::E164).to_string())
    }

    #[test]
    fn common_international_numbers_take_the_fast_path() {
        for (input, e164) in [
            ("+447400123456", "+447400123456"),
            ("+44 7400 123456", "+447400123456"),
            ("+1 (650) 253-0000", "+16502530000"),
            ("+919876543210", "+919876543210"),
            ("+5511987654321", "+5511987654321"),
            ("+390612345678", "+390612345678"),
        ] {
            assert_eq!(fast_e164(input).as_deref(), Some(e164), "{input}");
            assert_eq!(slow(input).as_deref(), Some(e164), "{input}");
        }
        // The crate strips a trunk prefix written after the country code: its call.
        assert_eq!(fast_e164("+44 07400 123456"), None);
        assert_eq!(fast_e164("+44 1"), None);
        assert_eq!(fast_e164("447400123456"), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Whenever the fast path answers, the crate answers the same.
        #[test]
        fn the_fast_path_agrees_with_the_crate(
            code in prop::sample::select(vec!["1", "7", "44", "49", "33", "39", "52", "55", "61", "81", "86", "91", "234", "351", "353", "971"]),
            national in "[0-9]{4,13}",
        ) {
            let input = format!("+{code}{national}");
            if let Some(fast) = fast_e164(&input) {
                prop_assert_eq!(Some(fast), slow(&input), "{}", input);
            }
        }

        /// And it says yes to the valid numbers of common countries (it is a fast path).
        #[test]
        fn valid_mobiles_are_taken_fast(n in 100_000_000u64..999_999_999) {
            let input = format!("+447{n}");
            prop_assert_eq!(fast_e164(&input), slow(&input));
        }
    }
}
