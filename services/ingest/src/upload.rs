//! Recipient uploads: rows checked in batches and stored as they come, the refused ones kept
//! for the report and `errors.csv`. A CSV is streamed: its bytes go through a bounded channel
//! to a parser on a blocking thread, whose batches are stored while it reads the next ones;
//! memory stays bounded whatever the file's size.

use std::io::{self, Read};

use bytes::{Buf, Bytes};
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use futures::{Stream, StreamExt};
use herald_shared::db::messages::{self, NewMessage};
use herald_shared::db::uploads::{self, UploadCounts};
use herald_shared::domain::{CampaignId, PhoneNumber};
use herald_shared::template::Values;
use phonenumber::country;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::audience::Mix;
use crate::error::FieldError;
use crate::{ApiError, AppState};

/// Rows checked and stored together.
const BATCH: usize = 5_000;
/// The longest line a CSV may have: the parser holds a record whole, so a file that never
/// breaks its lines must not become one record in memory.
const MAX_LINE: u64 = 1 << 20;
/// Refused rows the report lists; `errors.csv` has them all.
const INLINE_ERRORS: usize = 1_000;

#[derive(Serialize, Deserialize, Debug, utoipa::ToSchema)]
pub struct UploadReport {
    pub upload_id: uuid::Uuid,
    /// Rows read (not counting the header or blank lines).
    pub rows: i64,
    /// Rows added to the campaign, to send.
    pub accepted: i64,
    /// Rows added but never to be sent: the recipient opted out (the tenant's suppressions).
    #[serde(default)]
    pub suppressed: i64,
    /// Valid rows whose recipient the campaign already had (or an earlier row of the upload).
    pub duplicates: i64,
    /// How many rows were refused.
    pub rejected_count: i64,
    /// The first 1,000 refused rows, with why; nothing else of theirs was stored.
    pub rejected: Vec<RowError>,
    /// Every refused row, as CSV.
    pub errors_csv: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, utoipa::ToSchema)]
pub struct RowError {
    /// JSON: the 1-based position in `recipients`; CSV: the line the record starts on (the
    /// header is line 1).
    pub row: usize,
    pub field: String,
    pub reason: String,
}

/// A batch of checked rows.
#[derive(Default)]
pub struct Batch {
    pub rows: i64,
    pub valid: Vec<NewMessage>,
    pub rejected: Vec<RowError>,
}

impl Batch {
    fn reject(&mut self, row: usize, field: impl Into<String>, reason: impl Into<String>) {
        self.rejected.push(RowError {
            row,
            field: field.into(),
            reason: reason.into(),
        });
    }

    /// Checks one row: its phone, its template's values. Returns the row's template when its
    /// phone is valid.
    fn row(
        &mut self,
        mix: &Mix,
        row: usize,
        phone: &str,
        country: Option<country::Id>,
        values: Values,
    ) -> Option<i16> {
        self.rows += 1;
        if let Some((key, reason)) = values.problem(crate::limits::VALUE) {
            self.reject(row, key, reason);
            return None;
        }
        let phone = match PhoneNumber::parse_in(phone, country) {
            Ok(p) => p,
            Err(e) => {
                self.reject(row, "phone", format!("{phone:?} {e}"));
                return None;
            }
        };
        let template = mix.template_for(&phone).position;
        match mix.message(phone, values) {
            Ok(m) => self.valid.push(m),
            Err(refusal) => self.reject(row, refusal.field, refusal.reason),
        }
        Some(template)
    }
}

/// Batches stored at once, each on its own connection: Postgres spends a core on each.
const STORING: usize = 2;

/// What storing one batch added, and the rows it refused.
type Stored = (UploadCounts, Vec<RowError>);

/// Stores batches as they come, two at a time, and sums up the report in their order.
pub struct Store<'a> {
    state: &'a AppState,
    campaign: CampaignId,
    upload: uuid::Uuid,
    counts: UploadCounts,
    inline: Vec<RowError>,
    storing: FuturesOrdered<BoxFuture<'a, Result<Stored, ApiError>>>,
}

impl<'a> Store<'a> {
    pub async fn begin(state: &'a AppState, campaign: CampaignId) -> Result<Self, ApiError> {
        Ok(Self {
            state,
            campaign,
            upload: uploads::begin(&state.pool, campaign).await?,
            counts: UploadCounts::default(),
            inline: Vec::new(),
            storing: FuturesOrdered::new(),
        })
    }

    /// Starts storing `batch`, once fewer than `STORING` batches are being stored.
    pub async fn add(&mut self, mut batch: Batch) -> Result<(), ApiError> {
        while self.storing.len() >= STORING {
            self.settle_one().await?;
        }
        // Each number's recipients stored together: fan-out reads and marks a number's
        // messages from neighbouring rows. By number and then phone, so that two batches
        // stored at once meet a phone they share in the same order (no deadlock).
        batch
            .valid
            .sort_by(|a, b| (a.number, &a.recipient).cmp(&(b.number, &b.recipient)));
        let (pool, campaign, upload) = (self.state.pool.clone(), self.campaign, self.upload);
        self.storing.push_back(Box::pin(async move {
            let inserted = messages::insert_recipients(&pool, campaign, &batch.valid).await?;
            let errors: Vec<(i64, &str, &str)> = batch
                .rejected
                .iter()
                .map(|e| (e.row as i64, e.field.as_str(), e.reason.as_str()))
                .collect();
            uploads::add_errors(&pool, upload, &errors).await?;
            let counts = UploadCounts {
                rows: batch.rows,
                accepted: inserted.pending,
                suppressed: inserted.suppressed,
                duplicates: batch.valid.len() as i64 - inserted.pending - inserted.suppressed,
                rejected: batch.rejected.len() as i64,
            };
            Ok((counts, batch.rejected))
        }));
        Ok(())
    }

    async fn settle_one(&mut self) -> Result<(), ApiError> {
        if let Some(done) = self.storing.next().await {
            let (n, rejected) = done?;
            let c = &mut self.counts;
            c.rows += n.rows;
            c.accepted += n.accepted;
            c.suppressed += n.suppressed;
            c.duplicates += n.duplicates;
            c.rejected += n.rejected;
            let room = INLINE_ERRORS.saturating_sub(self.inline.len());
            self.inline.extend(rejected.into_iter().take(room));
        }
        Ok(())
    }

    pub async fn finish(mut self) -> Result<UploadReport, ApiError> {
        while !self.storing.is_empty() {
            self.settle_one().await?;
        }
        uploads::finish(&self.state.pool, self.upload, &self.counts).await?;
        let c = self.counts;
        tracing::info!(campaign = %self.campaign, upload = %self.upload, rows = c.rows,
                       accepted = c.accepted, rejected = c.rejected, "recipients uploaded");
        let inline = self.inline;
        Ok(UploadReport {
            upload_id: self.upload,
            rows: c.rows,
            accepted: c.accepted,
            suppressed: c.suppressed,
            duplicates: c.duplicates,
            rejected_count: c.rejected,
            rejected: inline,
            errors_csv: format!(
                "/v1/campaigns/{}/uploads/{}/errors.csv",
                self.campaign, self.upload
            ),
        })
    }
}

/// A JSON recipient: a phone and values by key (or the body's values in order).
#[derive(Deserialize, utoipa::ToSchema)]
pub struct JsonRecipient {
    phone: String,
    /// Values by slot key (`body.1`, `header.media`, …), or the body's values in order.
    #[serde(default)]
    #[schema(value_type = std::collections::BTreeMap<String, String>)]
    variables: Values,
}

impl JsonRecipient {
    /// A recipient with no values of their own (the campaign's fixed values apply).
    pub fn phone_only(phone: String) -> Self {
        Self {
            phone,
            variables: Values::default(),
        }
    }
}

/// Checks JSON rows (CPU-bound: a blocking thread), refusing the whole upload when a key a
/// template needs is given by no row.
pub fn check_json(rows: Vec<JsonRecipient>, mix: &Mix) -> Result<Vec<Batch>, ApiError> {
    let mut given = std::collections::HashSet::new();
    let mut used = std::collections::HashSet::new();
    let mut batches = Vec::new();
    let mut rows = rows.into_iter().enumerate().peekable();
    while rows.peek().is_some() {
        let mut batch = Batch::default();
        for (i, row) in rows.by_ref().take(BATCH) {
            given.extend(row.variables.keys().map(str::to_owned));
            if let Some(template) = batch.row(mix, i + 1, &row.phone, None, row.variables) {
                used.insert(template);
            }
        }
        batches.push(batch);
    }
    let missing = mix.missing(&|k| given.contains(k), &|p| used.contains(&p));
    if !missing.is_empty() {
        return Err(not_filled(missing));
    }
    Ok(batches)
}

fn not_filled(fields: Vec<FieldError>) -> ApiError {
    ApiError::Invalid {
        message: "the upload does not give values the templates need; nothing was stored".into(),
        fields,
    }
}

/// `default_country`, an ISO 3166 code (`GB`, `in`).
pub fn country(code: Option<&str>) -> Result<Option<country::Id>, ApiError> {
    let Some(code) = code.map(str::trim).filter(|c| !c.is_empty()) else {
        return Ok(None);
    };
    code.to_ascii_uppercase()
        .parse::<country::Id>()
        .map(Some)
        .map_err(|_| ApiError::Invalid {
            message: "the upload's options are invalid".into(),
            fields: vec![FieldError {
                row: None,
                field: "default_country".into(),
                reason: format!("{code:?} is not an ISO 3166 country code"),
            }],
        })
}

/// Streams a CSV into the campaign: the header first (refused whole, with 422, when a column
/// is not a parameter of the campaign's templates or a required one is missing), then the
/// rows, stored a batch at a time.
pub async fn csv<S>(
    state: &AppState,
    campaign: CampaignId,
    mix: Mix,
    body: S,
    country: Option<country::Id>,
) -> Result<UploadReport, ApiError>
where
    S: Stream<Item = Result<Bytes, io::Error>> + Send + Unpin,
{
    let (chunks_tx, chunks_rx) = mpsc::channel::<Result<Bytes, io::Error>>(8);
    let (batches_tx, mut batches_rx) = mpsc::channel::<Batch>(2);
    let parser = tokio::task::spawn_blocking(move || {
        parse_csv(ChannelReader::new(chunks_rx), &mix, country, &batches_tx)
    });
    let pump = async move {
        let mut body = body;
        while let Some(chunk) = body.next().await {
            if chunks_tx.send(chunk).await.is_err() {
                break; // The parser stopped (a bad header): the rest is not read.
            }
        }
    };
    let store = async {
        let mut store: Option<Store> = None;
        while let Some(batch) = batches_rx.recv().await {
            let s = match &mut store {
                Some(s) => s,
                None => store.insert(Store::begin(state, campaign).await?),
            };
            s.add(batch).await?;
        }
        Ok::<_, ApiError>(store)
    };
    let ((), stored) = tokio::join!(pump, store);
    let parsed = parser.await.map_err(|e| ApiError::Internal(e.into()))?;
    let stored = stored?;
    if let Err(e) = parsed {
        let Some(store) = stored else {
            return Err(e);
        };
        // Batches before the break are stored: say so, and how to finish the upload.
        let report = store.finish().await?;
        let message = format!(
            "{e}; the {} rows before it were stored (upload {}): upload the fixed file again, \
             the rows already stored count as duplicates",
            report.accepted, report.upload_id
        );
        return Err(match e {
            ApiError::TooLarge(_) => ApiError::TooLarge(message),
            _ => ApiError::BadRequest(message),
        });
    }
    let store = match stored {
        Some(s) => s,
        None => Store::begin(state, campaign).await?,
    };
    store.finish().await
}

/// `body`, failing once it has given more than `max` bytes.
/// An upload past `ingest.max_upload_bytes` (a 413).
#[derive(Debug, thiserror::Error)]
#[error("the upload is larger than {0} bytes (ingest.max_upload_bytes)")]
pub struct UploadTooLarge(usize);

pub fn limited<S>(body: S, max: usize) -> impl Stream<Item = Result<Bytes, io::Error>> + Send
where
    S: Stream<Item = Result<Bytes, io::Error>> + Send,
{
    let mut seen = 0usize;
    body.map(move |chunk| {
        let chunk = chunk?;
        seen += chunk.len();
        if seen > max {
            return Err(io::Error::other(UploadTooLarge(max)));
        }
        Ok(chunk)
    })
}

/// Reads the CSV and sends its rows, checked, in batches.
fn parse_csv(
    reader: ChannelReader,
    mix: &Mix,
    country: Option<country::Id>,
    batches: &mpsc::Sender<Batch>,
) -> Result<(), ApiError> {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(reader);
    let header: Vec<String> = csv
        .headers()
        .map_err(unreadable)?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').trim().to_ascii_lowercase())
        .collect();
    let columns = columns(&header, mix)?;
    let mut record = csv::StringRecord::new();
    let mut batch = Batch::default();
    loop {
        match csv.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                // A broken record (invalid UTF-8, say): refused alone, the rest read on.
                let byte = e.position().map_or(0, |p| p.byte());
                let line = csv.get_mut().line_at(byte);
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    return Err(unreadable(e));
                }
                batch.rows += 1;
                batch.reject(line, "row", format!("is not readable CSV: {e}"));
                continue;
            }
        }
        let byte = record.position().map_or(0, |p| p.byte());
        let line = csv.get_mut().line_at(byte);
        if record.iter().all(str::is_empty) {
            continue; // A line of separators only: as blank.
        }
        if record.len() > header.len() {
            batch.rows += 1;
            batch.reject(
                line,
                "row",
                format!(
                    "has {} fields; the header has {}",
                    record.len(),
                    header.len()
                ),
            );
        } else {
            let mut values = Values::default();
            for (i, key) in columns.values.iter() {
                if let Some(v) = record.get(*i).filter(|v| !v.is_empty()) {
                    values.insert(key.as_str(), v);
                }
            }
            let phone = record.get(columns.phone).unwrap_or_default();
            batch.row(mix, line, phone, country, values);
        }
        if batch.rows as usize >= BATCH
            && batches.blocking_send(std::mem::take(&mut batch)).is_err()
        {
            return Ok(()); // The store failed; it reports why.
        }
    }
    if batch.rows > 0 {
        let _ = batches.blocking_send(batch);
    }
    Ok(())
}

/// Which column is the phone and which fill which parameter.
struct Columns {
    phone: usize,
    values: Vec<(usize, String)>,
}

fn columns(header: &[String], mix: &Mix) -> Result<Columns, ApiError> {
    let mut problems = Vec::new();
    let mut phone = None;
    let mut values = Vec::new();
    let mut unknown = Vec::new();
    for (i, name) in header.iter().enumerate() {
        if header[..i].contains(name) {
            problems.push(FieldError {
                row: None,
                field: name.clone(),
                reason: "is a column twice".into(),
            });
        } else if name == "phone" {
            phone = Some(i);
        } else if mix.takes(name) {
            values.push((i, name.clone()));
        } else {
            unknown.push(if name.is_empty() {
                "(unnamed)".to_owned()
            } else {
                name.clone()
            });
        }
    }
    if !unknown.is_empty() {
        problems.push(FieldError {
            row: None,
            field: "columns".into(),
            reason: format!(
                "{} are not parameters of the campaign's templates (they take phone, {})",
                unknown.join(", "),
                mix.keys().join(", ")
            ),
        });
    }
    let Some(phone) = phone else {
        problems.push(FieldError {
            row: None,
            field: "phone".into(),
            reason: "the header has no phone column".into(),
        });
        return Err(header_refused(problems));
    };
    let given = |k: &str| values.iter().any(|(_, v)| v == k);
    problems.extend(mix.missing(&given, &|_| true));
    if !problems.is_empty() {
        return Err(header_refused(problems));
    }
    Ok(Columns { phone, values })
}

fn header_refused(fields: Vec<FieldError>) -> ApiError {
    ApiError::Invalid {
        message: "the CSV's header does not fit the campaign; nothing was stored".into(),
        fields,
    }
}

fn unreadable(e: csv::Error) -> ApiError {
    if let csv::ErrorKind::Io(io) = e.kind()
        && let Some(too_large) = io
            .get_ref()
            .and_then(|e| e.downcast_ref::<UploadTooLarge>())
    {
        return ApiError::TooLarge(too_large.to_string());
    }
    ApiError::BadRequest(format!("the CSV cannot be read: {e}"))
}

/// The request body as `Read`, for the CSV parser on its blocking thread. It notes where the
/// line breaks pass, so that a record's byte offset gives the line it starts on as a text
/// editor or a spreadsheet counts them (the parser skips blank lines without counting them).
struct ChannelReader {
    rx: mpsc::Receiver<Result<Bytes, io::Error>>,
    current: Bytes,
    /// Bytes given to the parser so far.
    offset: u64,
    /// The line breaks given but not yet passed by a record, each as the offset of the last
    /// byte before it that is not a line break (`-1`: none).
    breaks: std::collections::VecDeque<i64>,
    /// The offset of the last byte given that is not `\r` or `\n`.
    last_content: i64,
    /// Bytes since the last line break.
    line_length: u64,
    /// Line breaks before the last record asked about.
    lines_before: usize,
}

impl ChannelReader {
    fn new(rx: mpsc::Receiver<Result<Bytes, io::Error>>) -> Self {
        Self {
            rx,
            current: Bytes::new(),
            offset: 0,
            breaks: Default::default(),
            last_content: -1,
            line_length: 0,
            lines_before: 0,
        }
    }

    /// The 1-based line a record starts on, from the offset the parser gives for it (offsets
    /// asked about never decrease). The parser's offset is where it began looking: at the end
    /// of the line before, and before the blank lines it skipped. Every line break with no
    /// content between that offset and itself comes before the record.
    fn line_at(&mut self, offset: u64) -> usize {
        while self
            .breaks
            .front()
            .is_some_and(|content| *content < offset as i64)
        {
            self.breaks.pop_front();
            self.lines_before += 1;
        }
        self.lines_before + 1
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        for (i, byte) in buf[..n].iter().enumerate() {
            self.line_length += 1;
            match byte {
                b'\n' => {
                    self.breaks.push_back(self.last_content);
                    self.line_length = 0;
                }
                b'\r' => {}
                _ => self.last_content = (self.offset + i as u64) as i64,
            }
        }
        if self.line_length > MAX_LINE {
            return Err(io::Error::other(format!(
                "line {} is longer than {MAX_LINE} bytes",
                self.lines_before + self.breaks.len() + 1
            )));
        }
        self.offset += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_shared::db::templates::CampaignTemplate;
    use herald_shared::domain::NumberId;
    use proptest::prelude::*;

    /// Parses `body` (in `chunks`-byte pieces) as an upload to a one-template campaign; the
    /// outcome and the batches it sent.
    fn parse(body: &[u8], chunk: usize) -> (Result<(), ApiError>, Vec<Batch>) {
        let mix = Mix::new(
            vec![CampaignTemplate::only("t", "en", 2)],
            vec![NumberId::new()],
        );
        let (tx, rx) = mpsc::channel(body.len() / chunk.max(1) + 2);
        for piece in body.chunks(chunk.max(1)) {
            tx.try_send(Ok(Bytes::copy_from_slice(piece))).unwrap();
        }
        drop(tx);
        let (batches, mut out) = mpsc::channel(1024);
        let parsed = parse_csv(ChannelReader::new(rx), &mix, None, &batches);
        drop(batches);
        let mut sent = Vec::new();
        while let Ok(batch) = out.try_recv() {
            sent.push(batch);
        }
        (parsed, sent)
    }

    /// A CSV-ish text: the header, then lines of cells drawn from what breaks parsers.
    fn csvish() -> impl Strategy<Value = String> {
        let cell = prop_oneof![
            Just(String::new()),
            Just("+447400000001".to_owned()),
            Just("\"".to_owned()),
            Just("\"a,b\"".to_owned()),
            Just("\u{0}".to_owned()),
            Just("\u{feff}".to_owned()),
            Just("\r".to_owned()),
            "[\\PC]{0,12}",
            "[0-9+ ]{0,16}",
        ];
        let line = proptest::collection::vec(cell, 0..6).prop_map(|cells| cells.join(","));
        proptest::collection::vec(line, 0..12)
            .prop_map(|lines| format!("phone,body.1,body.2\n{}", lines.join("\n")))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn any_bytes_parse_without_panicking(
            body in proptest::collection::vec(any::<u8>(), 0..2048),
            chunk in 1usize..64,
        ) {
            let _ = parse(&body, chunk);
        }

        #[test]
        fn every_csv_row_is_either_accepted_or_refused_with_its_line(
            text in csvish(),
            chunk in 1usize..64,
        ) {
            let (parsed, batches) = parse(text.as_bytes(), chunk);
            prop_assert!(parsed.is_ok(), "{:?}", parsed.err());
            let lines = text.split('\n').count();
            for batch in &batches {
                prop_assert_eq!(batch.rows as usize, batch.valid.len() + batch.rejected.len());
                for refused in &batch.rejected {
                    prop_assert!(refused.row >= 2 && refused.row <= lines, "{:?}", refused);
                    let nul = '\u{0}';
                    prop_assert!(!refused.reason.contains(nul), "{:?}", refused);
                    prop_assert!(!refused.field.contains(nul), "{:?}", refused);
                }
            }
        }
    }
}
