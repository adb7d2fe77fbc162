//! In-memory storage for memories and their change history.
//!
//! Everything lives behind one mutex and is lost when the process exits. Lookups
//! scan a `Vec`, which keeps insertion order for listings and is fast enough for
//! an example.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// Shared handle to the memories. Clones refer to the same data.
#[derive(Clone, Debug, Default)]
pub struct Store {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    memories: Vec<Memory>,
    /// Changes per memory id, kept after the memory is deleted so its history
    /// stays readable until the next reset.
    history: HashMap<String, Vec<Change>>,
}

/// One stored memory, in the JSON shape the API returns.
#[derive(Clone, Debug, Serialize)]
pub struct Memory {
    pub id: String,
    pub memory: String,
    #[serde(flatten)]
    pub owner: Owner,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// RFC 3339 time in UTC.
    pub created_at: String,
    /// RFC 3339 time in UTC of the last update, `null` until the first one.
    pub updated_at: Option<String>,
}

/// The identifiers a memory belongs to. Requests name at least one of them.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Owner {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

/// One entry of a memory's history.
#[derive(Clone, Debug, Serialize)]
pub struct Change {
    pub id: String,
    pub memory_id: String,
    pub event: Event,
    /// Text before the change, `null` for `ADD`.
    pub old_memory: Option<String>,
    /// Text after the change, `null` for `DELETE`.
    pub new_memory: Option<String>,
    /// RFC 3339 time in UTC.
    pub created_at: String,
}

/// Kind of change recorded in the history, serialized in upper case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Event {
    Add,
    Update,
    Delete,
}

// ==== impl Owner ====

impl Owner {
    /// Drops identifiers that are present but empty, so `?user_id=` counts as
    /// no identifier at all.
    pub fn normalized(self) -> Self {
        let non_empty = |id: Option<String>| id.filter(|id| !id.is_empty());
        Self {
            user_id: non_empty(self.user_id),
            agent_id: non_empty(self.agent_id),
            run_id: non_empty(self.run_id),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.user_id.is_none() && self.agent_id.is_none() && self.run_id.is_none()
    }

    /// Checks that every identifier set in `self` equals the memory's one.
    fn selects(&self, owner: &Owner) -> bool {
        let matches =
            |wanted: &Option<String>, actual: &Option<String>| wanted.is_none() || wanted == actual;
        matches(&self.user_id, &owner.user_id)
            && matches(&self.agent_id, &owner.agent_id)
            && matches(&self.run_id, &owner.run_id)
    }
}

// ==== impl Store ====

impl Store {
    /// Stores one memory per text for `owner` and returns them in order.
    pub fn add(
        &self,
        owner: &Owner,
        texts: Vec<String>,
        metadata: Option<Map<String, Value>>,
    ) -> Vec<Memory> {
        let mut state = self.lock();
        let now = now_rfc3339();
        let mut added = Vec::with_capacity(texts.len());

        for text in texts {
            let memory = Memory {
                id: Uuid::new_v4().to_string(),
                memory: text,
                owner: owner.clone(),
                metadata: metadata.clone(),
                created_at: now.clone(),
                updated_at: None,
            };
            state.record(&memory.id, Event::Add, None, Some(memory.memory.clone()));
            state.memories.push(memory.clone());
            added.push(memory);
        }

        added
    }

    pub fn get(&self, id: &str) -> Option<Memory> {
        self.lock()
            .memories
            .iter()
            .find(|memory| memory.id == id)
            .cloned()
    }

    /// Returns the memories of `owner`, oldest first.
    pub fn list(&self, owner: &Owner) -> Vec<Memory> {
        self.lock()
            .memories
            .iter()
            .filter(|memory| owner.selects(&memory.owner))
            .cloned()
            .collect()
    }

    /// Returns up to `limit` memories of `owner` whose text contains `query`,
    /// compared case-insensitively, oldest first.
    pub fn search(&self, owner: &Owner, query: &str, limit: usize) -> Vec<Memory> {
        let query = query.to_lowercase();
        self.lock()
            .memories
            .iter()
            .filter(|memory| owner.selects(&memory.owner))
            .filter(|memory| memory.memory.to_lowercase().contains(&query))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Replaces the text of memory `id`, or returns `None` when it does not
    /// exist.
    pub fn update(&self, id: &str, text: String) -> Option<Memory> {
        let mut state = self.lock();
        let memory = state.memories.iter_mut().find(|memory| memory.id == id)?;

        let old = std::mem::replace(&mut memory.memory, text.clone());
        memory.updated_at = Some(now_rfc3339());
        let updated = memory.clone();

        state.record(id, Event::Update, Some(old), Some(text));
        Some(updated)
    }

    /// Deletes memory `id` and returns whether it existed.
    pub fn delete(&self, id: &str) -> bool {
        let mut state = self.lock();
        let Some(index) = state.memories.iter().position(|memory| memory.id == id) else {
            return false;
        };

        let removed = state.memories.remove(index);
        state.record(id, Event::Delete, Some(removed.memory), None);
        true
    }

    /// Deletes every memory of `owner` and returns how many there were.
    pub fn delete_all(&self, owner: &Owner) -> usize {
        let mut state = self.lock();
        let (removed, kept) = std::mem::take(&mut state.memories)
            .into_iter()
            .partition::<Vec<_>, _>(|memory| owner.selects(&memory.owner));
        state.memories = kept;

        for memory in &removed {
            state.record(&memory.id, Event::Delete, Some(memory.memory.clone()), None);
        }
        removed.len()
    }

    /// Returns the changes of memory `id`, oldest first, or `None` when no
    /// memory with that id was ever stored since the last reset.
    pub fn history(&self, id: &str) -> Option<Vec<Change>> {
        self.lock().history.get(id).cloned()
    }

    /// Removes every memory and all history.
    pub fn reset(&self) {
        let mut state = self.lock();
        state.memories.clear();
        state.history.clear();
    }

    /// Locks the state, recovering from a poisoned lock: the worst a request
    /// that panicked can leave behind is a change without its history entry,
    /// which is better than failing every later request.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

// ==== impl State ====

impl State {
    fn record(
        &mut self,
        memory_id: &str,
        event: Event,
        old_memory: Option<String>,
        new_memory: Option<String>,
    ) {
        let change = Change {
            id: Uuid::new_v4().to_string(),
            memory_id: memory_id.to_owned(),
            event,
            old_memory,
            new_memory,
            created_at: now_rfc3339(),
        };
        self.history
            .entry(memory_id.to_owned())
            .or_default()
            .push(change);
    }
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_micros(SystemTime::now()).to_string()
}
