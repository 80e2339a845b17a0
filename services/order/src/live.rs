//! `GET /orders/{id}/stream`: the order's status pushed as Server-Sent Events.
//!
//! The first event is the current state; every change after it follows as the event store
//! receives it. Each event's `id` is the `global_seq` of the last event folded into it (the
//! consistency token), so a client that reconnects with `Last-Event-ID` gets only what is
//! newer than what it saw. The stream ends after a final state (APPROVED, REJECTED). Open
//! streams are bounded by a semaphore: beyond `order.max_streams` the answer is 503
//! problem+json with `Retry-After`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use saga_contracts::ids::OrderId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::http::OrderView;
use crate::service::Orders;

/// The bound on concurrently open streams, shared by every request of one instance.
#[derive(Clone)]
pub struct StreamSlots {
    slots: Arc<Semaphore>,
    max: usize,
}

impl StreamSlots {
    pub fn new(max: usize) -> Self {
        StreamSlots {
            slots: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// A slot, held for the life of one stream; `None` when all are taken.
    pub fn try_acquire(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    pub fn max(&self) -> usize {
        self.max
    }
}

struct State {
    orders: Orders,
    order_id: OrderId,
    /// The last token sent (or the client's `Last-Event-ID`).
    last_sent: Option<i64>,
    progress: watch::Receiver<u64>,
    poll: Duration,
    done: bool,
    _slot: OwnedSemaphorePermit,
}

/// The SSE response for `order_id`, starting after `last_event_id` when the client resumes.
pub fn stream(
    orders: Orders,
    order_id: OrderId,
    last_event_id: Option<i64>,
    slot: OwnedSemaphorePermit,
    poll: Duration,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let state = State {
        progress: orders.projector().progress(),
        orders,
        order_id,
        last_sent: last_event_id,
        poll,
        done: false,
        _slot: slot,
    };
    let events = futures::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            match st.orders.current(st.order_id).await {
                Ok(Some((order, seq))) => {
                    if st.last_sent.is_none_or(|sent| seq > sent) {
                        st.last_sent = Some(seq);
                        st.done = order.status.is_final();
                        let event = Event::default()
                            .event("order")
                            .id(seq.to_string())
                            .json_data(OrderView::from(&order))
                            .unwrap_or_else(|_| Event::default().comment("unencodable"));
                        return Some((Ok(event), st));
                    }
                    if order.status.is_final() {
                        // Resumed after the final state: nothing more will come.
                        return None;
                    }
                }
                Ok(None) => return None,
                Err(e) => {
                    tracing::warn!(error = %e, order_id = %st.order_id, "order stream read failed; retrying");
                }
            }
            // Woken by the projector after any append (NOTIFY), with a poll as the net.
            let _ = tokio::time::timeout(st.poll, st.progress.changed()).await;
        }
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
