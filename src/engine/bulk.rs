//! Many leavers at once: each leaver's place in every connector's queue
//! (urgent before scheduled), and lookups for many leavers with one bulk
//! read per app instead of one lookup each.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use super::core::Engine;
use crate::connector::http::{Urgency, with_urgency};
use crate::connector::{Connector, ConnectorError, Lookup};
use crate::model::Person;

/// Fewer leavers than this are looked up one by one: a listing of the whole
/// directory costs more than a few lookups.
pub const BULK_MIN: usize = 3;

/// A bulk read's answers are used for this long; a discovery after it
/// looks the leaver up afresh.
pub const BULK_TTL: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// One app's bulk read for a set of leavers, under way or done.
pub(super) struct BulkRead {
    /// Leavers whose next lookup in this app takes its answer from the read
    /// (each once: later reads look up afresh).
    pending: HashSet<String>,
    started: std::time::Instant,
    answers: Shared<BoxFuture<'static, Arc<HashMap<String, Lookup>>>>,
}

/// The bulk reads under way or done, by connector id.
pub(super) type BulkReads = std::sync::Mutex<HashMap<String, Vec<BulkRead>>>;

impl Engine {
    /// Sets a leaver's urgency: every request the engine sends for them
    /// from then on (discovery, revocation, verification) takes its place in
    /// each connector's queue by it, so an urgent termination's requests go
    /// before those of leavers on the usual schedule.
    pub fn set_urgency(&self, email: &str, urgency: Urgency) {
        let email = Person::new(email).email;
        self.urgency
            .lock()
            .expect("urgency lock")
            .insert(email, urgency);
    }

    /// A leaver's urgency (scheduled unless set).
    pub fn urgency(&self, email: &str) -> Urgency {
        let email = Person::new(email).email;
        self.urgency
            .lock()
            .expect("urgency lock")
            .get(&email)
            .copied()
            .unwrap_or_default()
    }

    /// Runs `f` with the leaver's requests at their urgency.
    pub(super) async fn as_leaver<F: std::future::Future>(&self, email: &str, f: F) -> F::Output {
        with_urgency(self.urgency(email), f).await
    }

    /// Starts one bulk read per app (only `apps`; empty: all) for these
    /// leavers, where the app offers one ([`Connector::find_people`]): their
    /// discoveries that follow take their lookup from it instead of a
    /// lookup of their own. A leaver the read cannot answer for, or every
    /// leaver when the read fails, is looked up on their own as usual.
    /// Returns at once; the reads run in the background, and a discovery
    /// that needs one waits for it. Fewer than [`BULK_MIN`] leavers: nothing.
    /// Answers older than [`BULK_TTL`] are not used.
    pub fn look_up_many(&self, emails: &[String], apps: &[String]) {
        let people: Vec<Person> = emails
            .iter()
            .filter_map(|e| Self::normalise(e).ok())
            .collect::<Vec<_>>();
        let mut seen = HashSet::new();
        let people: Vec<Person> = people
            .into_iter()
            .filter(|p| seen.insert(p.email.clone()))
            .collect();
        if people.len() < BULK_MIN {
            return;
        }
        for c in self
            .connectors
            .iter()
            .filter(|c| apps.is_empty() || apps.iter().any(|a| a == c.id()))
        {
            let task = tokio::spawn(bulk_read(c.clone(), people.clone()));
            let answers = async move { Arc::new(task.await.unwrap_or_default()) }
                .boxed()
                .shared();
            self.bulk
                .lock()
                .expect("bulk lock")
                .entry(c.id().to_string())
                .or_default()
                .push(BulkRead {
                    pending: people.iter().map(|p| p.email.clone()).collect(),
                    started: std::time::Instant::now(),
                    answers,
                });
        }
    }

    /// The leaver's lookup in one app: from a bulk read started for them
    /// when there is one and it answers for them, else their own.
    pub(super) async fn lookup_in(
        &self,
        person: &Person,
        c: &Arc<dyn Connector>,
    ) -> Result<Lookup, ConnectorError> {
        let read = {
            let mut bulk = self.bulk.lock().expect("bulk lock");
            let reads = bulk.entry(c.id().to_string()).or_default();
            reads.retain(|r| r.started.elapsed() < BULK_TTL);
            let found = reads
                .iter_mut()
                .find_map(|r| r.pending.remove(&person.email).then(|| r.answers.clone()));
            // A read nobody waits for any more is dropped.
            reads.retain(|r| !r.pending.is_empty());
            found
        };
        if let Some(read) = read
            && let Some(lookup) = read.await.get(&person.email)
        {
            return Ok(lookup.clone());
        }
        c.find_person(person).await
    }
}

/// One app's bulk read; a failure leaves every leaver to their own lookup.
async fn bulk_read(c: Arc<dyn Connector>, people: Vec<Person>) -> HashMap<String, Lookup> {
    match c.find_people(&people).await {
        Ok(found) => {
            tracing::info!(
                connector = c.id(),
                leavers = people.len(),
                answered = found.len(),
                "bulk lookup"
            );
            found.into_iter().collect()
        }
        Err(e) => {
            tracing::info!(connector = c.id(), error = %e, "no bulk lookup; looking leavers up one by one");
            HashMap::new()
        }
    }
}
