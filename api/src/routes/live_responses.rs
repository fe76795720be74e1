//! Anonymous answers about the live page, kept as the bytes sent. At 10:00 thousands of students
//! send the very same request (the page's query, no token); its answer depends on nothing but the
//! request and `live_events`, so it is computed once per change of that table and then sent
//! as it is, without parsing or executing GraphQL again.
//!
//! Freshness is the live page cache's: an answer is kept with the `live_events` stamp read
//! before it was computed, and sent again only while a stamp read after the new request arrived
//! is the same (`ReadModels::live_page_stamp`, the `live_events_version` row). Only queries whose root fields are `liveEvents`,
//! `liveEvent` and `__typename`, asked without a token and answered without errors, are kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_graphql::parser::types::{OperationType, Selection};
use async_graphql::BatchRequest;
use axum::body::Bytes;
use webinar_projections::live_events::Stamp;
use webinar_projections::queries::ReadModels;

/// Request bodies longer than this are never kept (the page's query is a few hundred bytes).
const MAX_REQUEST_BYTES: usize = 4096;
/// Answers longer than this are never kept (a page of 50 events is about 30 KB).
const MAX_ANSWER_BYTES: usize = 256 * 1024;
/// Distinct request bodies remembered; past it, all are forgotten (a client inventing bodies
/// only costs itself cache misses).
const MAX_REQUESTS: usize = 128;

/// What is known of a request body.
enum Known {
    /// Not an anonymous live-page query: never kept.
    Other,
    /// A live-page query, with its last answer and the stamp it was computed at.
    Live(Option<(Stamp, Bytes)>),
}

/// What to do with an anonymous request.
pub enum Lookup {
    /// Send these bytes: the answer is current.
    Hit(Bytes),
    /// Compute the answer and keep it with this stamp.
    Keep(Stamp),
    /// Compute the answer; keep nothing.
    Pass,
    /// Not seen before: decide once the request is parsed ([`LiveResponses::admit`]).
    Unknown,
}

#[derive(Clone)]
pub struct LiveResponses {
    reads: ReadModels,
    known: Arc<Mutex<HashMap<Bytes, Known>>>,
}

impl LiveResponses {
    pub fn new(reads: ReadModels) -> Self {
        Self {
            reads,
            known: Arc::default(),
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<Bytes, Known>> {
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The fate of an anonymous request's `body`.
    pub async fn lookup(&self, body: &Bytes) -> Lookup {
        if body.len() > MAX_REQUEST_BYTES {
            return Lookup::Pass;
        }
        let kept = match self.known().get(body) {
            None => return Lookup::Unknown,
            Some(Known::Other) => return Lookup::Pass,
            Some(Known::Live(kept)) => kept.clone(),
        };
        // A failed stamp read: answer from the database, which reports its own failure.
        let Some(now) = self.reads.live_page_stamp().await else {
            return Lookup::Pass;
        };
        match kept {
            Some((stamp, answer)) if stamp == now => Lookup::Hit(answer),
            _ => Lookup::Keep(now),
        }
    }

    /// Decides, from the parsed request, whether a body seen for the first time is kept.
    pub async fn admit(&self, body: &Bytes, batch: &mut BatchRequest) -> Lookup {
        if body.len() > MAX_REQUEST_BYTES {
            return Lookup::Pass;
        }
        let live = only_reads_the_live_page(batch);
        {
            let mut known = self.known();
            if known.len() >= MAX_REQUESTS {
                known.clear();
            }
            known.insert(
                body.clone(),
                if live {
                    Known::Live(None)
                } else {
                    Known::Other
                },
            );
        }
        if !live {
            return Lookup::Pass;
        }
        match self.reads.live_page_stamp().await {
            Some(now) => Lookup::Keep(now),
            None => Lookup::Pass,
        }
    }

    /// Keeps `answer` (computed after `stamp` was read) for `body`.
    pub fn keep(&self, body: &Bytes, stamp: Stamp, answer: &Bytes) {
        if answer.len() > MAX_ANSWER_BYTES {
            return;
        }
        if let Some(Known::Live(kept)) = self.known().get_mut(body) {
            // A slower request's older answer may replace a newer one: that only costs a miss,
            // as answers are sent only at their own stamp.
            *kept = Some((stamp, answer.clone()));
        }
    }
}

/// Whether the request is one query whose root fields read `live_events` only (so that its
/// answer, for a caller without a token, depends on nothing else).
fn only_reads_the_live_page(batch: &mut BatchRequest) -> bool {
    let BatchRequest::Single(request) = batch else {
        return false;
    };
    let Ok(document) = request.parsed_query() else {
        return false;
    };
    document.operations.iter().all(|(_, operation)| {
        operation.node.ty == OperationType::Query
            && operation
                .node
                .selection_set
                .node
                .items
                .iter()
                .all(|item| match &item.node {
                    Selection::Field(field) => matches!(
                        field.node.name.node.as_str(),
                        "liveEvents" | "liveEvent" | "__typename"
                    ),
                    // Fragments at the root could select anything: not kept.
                    _ => false,
                })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(query: &str) -> bool {
        only_reads_the_live_page(&mut BatchRequest::Single(async_graphql::Request::new(
            query,
        )))
    }

    #[test]
    fn only_queries_of_the_live_page_alone_are_kept() {
        assert!(live(
            "{ liveEvents(first: 50) { edges { node { id title } } } }"
        ));
        assert!(live(
            "query Page { __typename e: liveEvent(id: \"x\") { title } }"
        ));
        assert!(!live("{ liveEvents { edges { node { id } } } me { id } }"));
        assert!(!live("{ ...F } fragment F on Query { me { id } }"));
        assert!(!live(
            "mutation { postChatMessage(webinarId: \"x\", text: \"hi\") { id } }"
        ));
        assert!(!live("subscription { liveEventChanged { id } }"));
        assert!(!live("{ liveEvents { edges"));
        let batch = vec![async_graphql::Request::new(
            "{ liveEvents { edges { node { id } } } }",
        )];
        assert!(!only_reads_the_live_page(&mut BatchRequest::Batch(batch)));
    }
}
