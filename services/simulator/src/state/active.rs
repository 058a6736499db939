//! The configuration in force, with its lookups.

use std::collections::HashMap;

use tokio::time::Instant;

use crate::config::{NumberDef, SimConfig, TemplateDef};

/// The configuration in force, with lookups built once.
pub struct Active {
    pub config: SimConfig,
    pub since: Instant,
    numbers: HashMap<String, NumberDef>,
    /// By (WABA, name, language); `None` is every WABA's.
    templates: HashMap<(Option<String>, String, String), TemplateDef>,
}

impl Active {
    pub fn new(config: SimConfig) -> Self {
        let numbers = config
            .numbers
            .iter()
            .map(|n| (n.phone_number_id.clone(), n.clone()))
            .collect();
        let templates = config
            .templates
            .iter()
            .map(|t| {
                (
                    (t.waba_id.clone(), t.name.clone(), t.language.clone()),
                    t.clone(),
                )
            })
            .collect();
        Self {
            config,
            since: Instant::now(),
            numbers,
            templates,
        }
    }

    pub fn number(&self, phone_number_id: &str) -> Option<&NumberDef> {
        self.numbers.get(phone_number_id)
    }

    pub fn template(&self, waba: &str, name: &str, language: &str) -> Option<&TemplateDef> {
        let (name, language) = (name.to_owned(), language.to_owned());
        self.templates
            .get(&(Some(waba.to_owned()), name.clone(), language.clone()))
            .or_else(|| self.templates.get(&(None, name, language)))
    }

    /// The templates `waba` lists, in configuration order.
    pub fn templates_of<'a>(&'a self, waba: &'a str) -> impl Iterator<Item = &'a TemplateDef> {
        self.config
            .templates
            .iter()
            .filter(move |t| t.waba_id.as_deref().is_none_or(|w| w == waba))
    }

    pub(super) fn cap_for(&self, phone_number_id: &str) -> u32 {
        self.number(phone_number_id)
            .and_then(|n| n.cap)
            .unwrap_or(self.config.cap_per_number)
    }

    pub(super) fn portfolio_of(&self, phone_number_id: &str) -> Option<&str> {
        self.number(phone_number_id)?.portfolio_id.as_deref()
    }
}
