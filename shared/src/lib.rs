//! Herald's shared library: what two or more services use.
//!
//! Lower modules never import higher ones: `domain` ← `config` ← `db` / `stream` / `whatsapp`.

pub mod clock;
pub mod crypto;
pub mod db;
pub mod domain;
pub mod hash;
pub mod health;
pub mod phone;
pub mod server;
pub mod settings;
pub mod signature;
pub mod standard_webhooks;
pub mod stream;
pub mod suppress;
pub mod tasks;
pub mod telemetry;
pub mod template;
pub mod whatsapp;
