//! Every Redis key name. A number's keys share the hash tag `{n:<number id>}` so that they
//! live in one Redis Cluster slot and one Lua script can touch them together. Every key starts
//! with the configured prefix, so several deployments (or tests) can share one Redis.

use crate::domain::{NumberId, TenantId};

/// Key names under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

/// One number's keys, built once per number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberKeys {
    pub number: NumberId,
    /// Messages ready to send.
    pub stream: String,
    /// Delayed retries; score = due time in Unix milliseconds.
    pub retry: String,
    /// Per campaign, the highest message id fanned out to the stream.
    pub fanout: String,
    /// Entries of paused campaigns, set aside by the number's owner; score = message id.
    pub parked: String,
    /// Which sender owns the number: `<consumer>:<fencing token>`, with an expiry.
    pub lease: String,
    /// Ids of entries an owner read but never started when it stopped on purpose: its
    /// successor sends them at once instead of waiting for receipts that cannot come.
    pub handback: String,
    /// The number's fencing-token counter.
    pub fence: String,
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// One of `number`'s keys.
    fn of_number(&self, number: NumberId, what: &str) -> String {
        format!("{}:{{n:{number}}}:{what}", self.prefix)
    }

    /// Every key of `number`.
    pub fn number(&self, number: NumberId) -> NumberKeys {
        let key = |what: &str| self.of_number(number, what);
        NumberKeys {
            number,
            stream: key("stream"),
            retry: key("retry"),
            fanout: key("fanout"),
            parked: key("parked"),
            lease: key("lease"),
            handback: key("handback"),
            fence: key("fence"),
        }
    }

    /// Messages ready to send for a number.
    pub fn stream(&self, number: NumberId) -> String {
        self.of_number(number, "stream")
    }

    /// Delayed retries for a number.
    pub fn retry(&self, number: NumberId) -> String {
        self.of_number(number, "retry")
    }

    /// A number's lease.
    pub fn lease(&self, number: NumberId) -> String {
        self.of_number(number, "lease")
    }

    /// Live senders, scored by their last heartbeat (Unix ms).
    pub fn senders(&self) -> String {
        format!("{}:senders", self.prefix)
    }

    /// The set of active number ids.
    pub fn numbers(&self) -> String {
        format!("{}:numbers", self.prefix)
    }

    /// The recipients a tenant's business portfolio reached in the last 24 h, scored by when
    /// (Unix ms): its daily messaging limit counts them.
    pub fn portfolio_reached(&self, tenant: TenantId, portfolio: &str) -> String {
        format!("{}:{{portfolio:{tenant}:{portfolio}}}:reached", self.prefix)
    }

    /// Present while every number of `scope` (`app`, or `waba:<id>`) must hold its sends
    /// after a Graph rate-limit error (codes 4, 80007); its value is the Unix ms it ends at.
    pub fn scope_throttle(&self, scope: &str) -> String {
        format!("{}:throttle:{scope}", self.prefix)
    }

    /// Suppression changes, for every sender to apply to its cache within a second.
    pub fn suppressions(&self) -> String {
        format!("{}:suppressions", self.prefix)
    }

    /// Numbers whose streams fan-out just appended to (see `doorbell`).
    pub fn doorbells(&self) -> String {
        format!("{}:doorbells", self.prefix)
    }

    /// Raw verified webhook bodies.
    pub fn webhooks(&self) -> String {
        format!("{}:webhooks", self.prefix)
    }

    /// Receipts naming a wamid no message has yet (the send not recorded yet), scored by when
    /// to try them again.
    pub fn webhooks_unmatched(&self) -> String {
        format!("{}:webhooks:unmatched", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_keys_share_one_hash_tag() {
        let keys = Keys::new("hx");
        let n = NumberId::new();
        let tag = format!("{{n:{n}}}");
        let k = keys.number(n);
        assert_eq!(keys.stream(n), k.stream);
        assert_eq!(keys.retry(n), k.retry);
        assert_eq!(keys.lease(n), k.lease);
        for key in [
            k.stream, k.retry, k.fanout, k.parked, k.lease, k.handback, k.fence,
        ] {
            assert!(key.starts_with("hx:"));
            assert!(key.contains(&tag), "{key}");
        }
    }
}
