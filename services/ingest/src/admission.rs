//! What one API client may take of an ingest replica: requests per key per second (a burst
//! allowed), and uploads under way per tenant at once. Both are per replica: with N replicas a
//! key may make N times the requests, each replica still protected.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use herald_shared::domain::TenantId;
use herald_shared::settings::IngestSettings;

use crate::ApiError;

pub struct Admission {
    /// Keyed by the API key's hash; only keys that authenticated get a place.
    requests: DefaultKeyedRateLimiter<Vec<u8>>,
    clock: DefaultClock,
    uploads: Arc<Mutex<HashMap<TenantId, usize>>>,
    max_uploads: usize,
}

impl Admission {
    pub fn new(settings: &IngestSettings) -> Self {
        let rate = NonZeroU32::new(settings.requests_per_key_per_s.max(1)).expect("at least 1");
        let burst = NonZeroU32::new(settings.request_burst.max(1)).expect("at least 1");
        Self {
            requests: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            clock: DefaultClock::default(),
            uploads: Arc::default(),
            max_uploads: settings.max_uploads_per_tenant.max(1),
        }
    }

    /// One request of the key whose hash is `key`: refused (429) past its rate.
    pub fn request(&self, key: &[u8]) -> Result<(), ApiError> {
        if self.requests.len() > 100_000 {
            // Revoked and forgotten keys go; the live ones lose nothing that matters.
            self.requests.retain_recent();
        }
        self.requests.check_key(&key.to_vec()).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            ApiError::TooManyRequests {
                message: "too many requests with this API key; slow down".into(),
                retry_after: wait,
            }
        })
    }

    /// A place for one of `tenant`'s uploads, held until the guard drops; refused (429) when
    /// the tenant already has `ingest.max_uploads_per_tenant` under way.
    pub fn upload(&self, tenant: TenantId) -> Result<UploadSlot, ApiError> {
        let mut uploads = self.uploads.lock().expect("uploads lock");
        let under_way = uploads.entry(tenant).or_default();
        if *under_way >= self.max_uploads {
            return Err(ApiError::TooManyRequests {
                message: format!(
                    "{} uploads of this tenant are under way, the most at once; send this one \
                     when one has finished",
                    self.max_uploads
                ),
                retry_after: Duration::from_secs(5),
            });
        }
        *under_way += 1;
        Ok(UploadSlot {
            uploads: self.uploads.clone(),
            tenant,
        })
    }
}

/// An upload under way; its place frees when dropped (the request ended, however it ended).
pub struct UploadSlot {
    uploads: Arc<Mutex<HashMap<TenantId, usize>>>,
    tenant: TenantId,
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        let mut uploads = self.uploads.lock().expect("uploads lock");
        if let Some(n) = uploads.get_mut(&self.tenant) {
            *n -= 1;
            if *n == 0 {
                uploads.remove(&self.tenant);
            }
        }
    }
}
