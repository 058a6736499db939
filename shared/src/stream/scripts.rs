//! Every Lua script Herald runs, each loaded from `scripts/*.lua` and built once (a
//! `redis::Script` hashes its source; `invoke_async` sends `EVALSHA` and loads it on a miss).

use std::sync::LazyLock;

use redis::Script;

macro_rules! script {
    ($(#[$doc:meta])* $name:ident, $file:literal) => {
        $(#[$doc])*
        pub(crate) static $name: LazyLock<Script> =
            LazyLock::new(|| Script::new(include_str!(concat!("scripts/", $file))));
    };
}

script!(
    /// Due retries back to the stream.
    MOVE_DUE_RETRIES,
    "move_due_retries.lua"
);
script!(
    /// A fan-out page onto a number's stream, once.
    FAN_OUT,
    "fan_out.lua"
);
script!(
    /// Parked entries of campaigns no longer held back to the stream.
    UNPARK,
    "unpark.lua"
);
script!(
    /// A free lease, with a new fencing token.
    LEASE_ACQUIRE,
    "lease_acquire.lua"
);
script!(
    /// A lease extended by its holder.
    LEASE_RENEW,
    "lease_renew.lua"
);
script!(
    /// A lease dropped by its holder.
    LEASE_RELEASE,
    "lease_release.lua"
);
script!(
    /// An app or WABA hold, made longer only.
    EXTEND_HOLD,
    "extend_hold.lua"
);
script!(
    /// A recipient counted against a portfolio's daily limit.
    ADMIT_RECIPIENT,
    "admit_recipient.lua"
);
