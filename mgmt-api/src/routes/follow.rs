//! A live tail of the flow records (viewer): server-sent events, one `flow`
//! event per record as the writer commits it, with the filters of
//! `GET /flows`. Each event's `id` is the record's, so a client that
//! reconnects with `after` (or the `Last-Event-ID` header a browser's
//! EventSource sends) misses nothing. A tail lasts `seconds` at most and a
//! few are open at once: each holds a reader of the store on a thread of
//! the blocking pool.

use super::records::{now_ms, records_error, records_path};
use crate::error::{ApiError, ApiResult, ErrorBody, ErrorCode};
use crate::state::{blocking, Caller, Shared};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use control::records::{FlowParams, FlowRow, RecordsReader};
use futures_util::stream::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use utoipa::IntoParams;

/// Tails open at once, at most.
pub const MAX_TAILS: usize = 8;
/// How long a tail lasts unless `seconds` says less.
const DEFAULT_SECONDS: u64 = 600;
const MAX_SECONDS: u64 = 3600;
/// How often the store is read for new records.
const POLL: Duration = Duration::from_millis(500);
/// Records read at once; more wait for the next read.
const CHUNK: usize = 1000;

/// Where a tail starts and how long it lasts.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TailParams {
    /// Start after this record id (an event's `id`): records written
    /// before the call, from there on. Default: only records written from
    /// now on.
    #[param(pattern = "^[0-9]{1,18}$")]
    pub after: Option<String>,
    /// Seconds the tail lasts, 1-3600 (default 600); then the stream ends
    /// and the client reconnects with `after`.
    #[param(pattern = "^[0-9]{1,4}$")]
    pub seconds: Option<String>,
}

/// A tail's place among the [`MAX_TAILS`]; given back when dropped.
struct Slot(Shared);

impl Slot {
    fn take(st: &Shared) -> ApiResult<Slot> {
        let open = st.tails.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(st.clone());
        if open >= MAX_TAILS {
            let mut e = ApiError::new(
                ErrorCode::RateLimited,
                format!("{MAX_TAILS} live tails are open already: close one, or page with GET /api/v1/flows"),
            );
            e.retry_after = Some(POLL.as_secs().max(1));
            return Err(e);
        }
        Ok(slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.tails.fetch_sub(1, Ordering::AcqRel);
    }
}

fn number(v: Option<&str>, field: &'static str, what: &str) -> ApiResult<Option<u64>> {
    v.map(|t| {
        t.trim().parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!("invalid {field} {t:?}: {what}")).field(field)
        })
    })
    .transpose()
}

/// Flow records as they are written (viewer), as server-sent events: first
/// a `start` event whose `id` is where the tail starts, then each record a
/// `flow` event whose data is the record as `GET /flows` gives it and whose
/// `id` is its id. Filters as `GET /flows` (`limit` and `cursor`
/// aside); a comment every 15 s keeps the connection open. With
/// [`MAX_TAILS`] open already, a 429.
#[utoipa::path(get, path = "/api/v1/flows/follow", tag = "records", params(FlowParams, TailParams),
    responses((status = 200, content_type = "text/event-stream", body = String,
            description = "server-sent events: `event: start` (`id`: where the tail starts), then `event: flow`, `id: RECORD_ID`, `data: FLOW (JSON)`"),
        (status = 400, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "flow records are off on this appliance")))]
pub async fn follow(
    State(st): State<Shared>,
    _c: Caller,
    headers: HeaderMap,
    Query(q): Query<FlowParams>,
    Query(t): Query<TailParams>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, axum::Error>>>> {
    let filter = q
        .filter(now_ms())
        .map_err(|e| ApiError::bad_request(e.message).field(e.field))?;
    let last_event = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let after = match number(t.after.as_deref(), "after", "expected a record id")? {
        Some(a) => Some(a),
        None => number(
            last_event.as_deref(),
            "Last-Event-ID",
            "expected a record id",
        )?,
    };
    let seconds =
        number(t.seconds.as_deref(), "seconds", "expected 1-3600")?.unwrap_or(DEFAULT_SECONDS);
    if !(1..=MAX_SECONDS).contains(&seconds) {
        return Err(ApiError::bad_request(format!(
            "invalid seconds {seconds}: expected 1-{MAX_SECONDS}"
        ))
        .field("seconds"));
    }
    let path = records_path(&st)?;
    let slot = Slot::take(&st)?;
    let (reader, start) = blocking(move || {
        let reader = RecordsReader::open(&path).map_err(records_error)?;
        let start = match after {
            Some(a) => i64::try_from(a).unwrap_or(i64::MAX),
            None => reader.last_id().map_err(records_error)?,
        };
        Ok((reader, start))
    })
    .await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<(i64, FlowRow)>(CHUNK);
    let until = Instant::now() + Duration::from_secs(seconds);
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let mut after = start;
        // Ends when the client goes (the receiver is dropped), the time is
        // up, or the store cannot be read.
        while !tx.is_closed() && Instant::now() < until {
            let Ok(rows) = reader.tail(&filter, after, CHUNK) else {
                return;
            };
            let full = rows.len() == CHUNK;
            for row in rows {
                after = row.0;
                if tx.blocking_send(row).is_err() {
                    return;
                }
            }
            if !full {
                std::thread::sleep(POLL);
            }
        }
    });
    // First where the tail starts, so that a client whose tail ends before
    // any record came resumes from there, not from whenever it reconnects.
    let start_event = Event::default()
        .event("start")
        .id(start.to_string())
        .json_data(serde_json::json!({ "after": start }));
    let records = futures_util::stream::unfold(rx, |mut rx| async move {
        let (id, row) = rx.recv().await?;
        let event = Event::default()
            .event("flow")
            .id(id.to_string())
            .json_data(&row);
        Some((event, rx))
    });
    let stream = futures_util::stream::once(async move { start_event }).chain(records);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
