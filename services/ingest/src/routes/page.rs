//! Every list answers one shape, `{"items": [...], "next_cursor": "…" | null}`, a page at a
//! time by keyset (`?limit=&cursor=`): a page starts after the last item of the one before, so
//! rows that change meanwhile are neither skipped nor repeated. A cursor is opaque to clients.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::ApiError;

/// Items per page unless `?limit=` says otherwise, and the most it may say.
pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 1000;

#[derive(Serialize, Deserialize, Debug, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Where the next page starts (`?cursor=`); `null` on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page from `rows` fetched with a limit of `limit + 1`: the extra row only says that
    /// another page follows, whose cursor is `key` of this page's last item.
    pub fn new(mut rows: Vec<T>, limit: i64, key: impl Fn(&T) -> String) -> Self {
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let next_cursor = if more {
            rows.last().map(|last| URL_SAFE_NO_PAD.encode(key(last)))
        } else {
            None
        };
        Self {
            items: rows,
            next_cursor,
        }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_cursor: self.next_cursor,
        }
    }
}

/// `?limit=` and `?cursor=`.
#[derive(Deserialize, Debug, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page: 1 to 1,000 (100 when not given).
    pub limit: Option<i64>,
    /// The `next_cursor` of the page before.
    pub cursor: Option<String>,
}

impl PageQuery {
    /// The page size (1 to 1,000; 100 when not given).
    pub fn limit(&self) -> Result<i64, ApiError> {
        match self.limit {
            None => Ok(DEFAULT_LIMIT),
            Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            Some(_) => Err(ApiError::invalid_field(
                "limit",
                format!("must be from 1 to {MAX_LIMIT}"),
            )),
        }
    }

    /// The key the page starts after, as the cursor carried it.
    pub fn after(&self) -> Result<Option<String>, ApiError> {
        let Some(cursor) = self.cursor.as_deref().filter(|c| !c.is_empty()) else {
            return Ok(None);
        };
        URL_SAFE_NO_PAD
            .decode(cursor)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .map(Some)
            .ok_or_else(|| {
                ApiError::invalid_field("cursor", "is not a cursor this API gave (next_cursor)")
            })
    }

    /// The key the page starts after, parsed (a cursor of another list is refused).
    pub fn after_parsed<K: std::str::FromStr>(&self) -> Result<Option<K>, ApiError> {
        self.after()?
            .map(|key| {
                key.parse()
                    .map_err(|_| ApiError::invalid_field("cursor", "is not a cursor of this list"))
            })
            .transpose()
    }
}
