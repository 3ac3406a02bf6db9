//! Sessions shared by several instances (the [`Bus`] port): any instance may serve any request
//! of a session, so what arrives at one may concern another. A message for a stream that is not
//! open here, a client's answer that no call here waits for, a client's notification, and a
//! session's end are told to the other instances as [`Note`]s; each acts on what it holds and
//! ignores the rest. Without a bus nothing is told, and one instance serves its sessions alone.

use std::sync::Arc;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::platform::BoxStream;
use crate::ports::Bus;

/// What one instance tells the others about a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub(crate) enum Note {
    /// A message for the session's stream, logged already under `id` (none on legacy SSE).
    Stream {
        sid: String,
        id: Option<String>,
        data: String,
    },
    /// The client's answer to a request an upstream sent it (`Ok` a result, `Err` an error).
    Answer {
        sid: String,
        id: Value,
        outcome: Result<Value, Value>,
    },
    /// A notification from the client (a cancellation, changed roots).
    Notify {
        sid: String,
        method: String,
        params: Option<Value>,
    },
    /// The session ended (deleted or expired).
    End { sid: String },
}

/// A note on the wire, with who sent it (an instance ignores its own).
#[derive(Serialize, Deserialize)]
struct Wire {
    from: String,
    #[serde(flatten)]
    note: Note,
}

/// This instance's side of the bus.
pub(crate) struct Peers {
    bus: Option<Arc<dyn Bus>>,
    /// This instance's name on the bus (random per process).
    me: String,
}

impl Peers {
    /// Peers over `bus`, this instance named `me`; alone without a bus.
    pub fn new(bus: Option<Arc<dyn Bus>>, me: String) -> Self {
        Self { bus, me }
    }

    /// True when other instances may serve this instance's sessions.
    pub fn shared(&self) -> bool {
        self.bus.is_some()
    }

    /// This instance's name.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// Tells every other instance.
    pub async fn tell(&self, note: Note) {
        let Some(bus) = &self.bus else { return };
        let wire = Wire {
            from: self.me.clone(),
            note,
        };
        if let Ok(text) = serde_json::to_string(&wire) {
            bus.publish(text).await;
        }
    }

    /// What the other instances tell, from now on (none without a bus). A message that is not a
    /// note (another version's, or garbage) is skipped.
    pub fn hear(&self) -> Option<BoxStream<'static, Note>> {
        let bus = self.bus.as_ref()?;
        let me = self.me.clone();
        Some(Box::pin(bus.messages().filter_map(move |text| {
            let note = serde_json::from_str::<Wire>(&text)
                .ok()
                .filter(|w| w.from != me)
                .map(|w| w.note);
            futures::future::ready(note)
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::MemoryBus;

    #[test]
    fn notes_reach_the_other_instances_only() {
        futures::executor::block_on(async {
            let bus: Arc<dyn Bus> = Arc::new(MemoryBus::default());
            let a = Peers::new(Some(bus.clone()), "a".into());
            let b = Peers::new(Some(bus.clone()), "b".into());
            let mut heard_a = a.hear().expect("a hears");
            let mut heard_b = b.hear().expect("b hears");
            let note = Note::Answer {
                sid: "s1".into(),
                id: Value::from("srv ☃ 1"),
                outcome: Err(serde_json::json!({"code": -1, "message": "no"})),
            };
            a.tell(note.clone()).await;
            bus.publish("not a note".into()).await;
            b.tell(Note::End { sid: "s1".into() }).await;
            assert_eq!(heard_b.next().await, Some(note), "b hears a's note as sent");
            // a skips its own note and the garbage, and hears b's.
            assert_eq!(heard_a.next().await, Some(Note::End { sid: "s1".into() }));
            let alone = Peers::new(None, "c".into());
            assert!(alone.hear().is_none() && !alone.shared());
            alone.tell(Note::End { sid: "x".into() }).await;
        });
    }
}
