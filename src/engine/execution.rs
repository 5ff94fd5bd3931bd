//! Execution: a revoke from plan to summary, each request recorded before it
//! is sent and its answer after; manual steps ticked off.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use chrono::Utc;
use futures::future::join_all;
use tokio::sync::Notify;

use super::case::answer_state;
use super::core::{Engine, EngineError, Selection};
use super::{Event, Summary};
use crate::connector::ConnectorError;
use crate::evidence::{LedgerEvent, PlannedStep};
use crate::model::{Grant, GrantState, Phase, Plan};
use crate::sanitize::clean;

impl Engine {
    /// Plans, executes phase by phase in each app (an app's phase starts
    /// once its requests of the one before are answered), and verifies until every requested
    /// grant is verified, acknowledged, failed or unconfirmed. Verification
    /// starts as soon as the first removal is accepted, alongside the later
    /// phases. Discovers the case first when nobody was looked up yet.
    pub async fn revoke(&self, email: &str, selection: &Selection) -> Result<Summary, EngineError> {
        self.as_leaver(email, self.revoke_queued(email, selection))
            .await
    }

    async fn revoke_queued(
        &self,
        email: &str,
        selection: &Selection,
    ) -> Result<Summary, EngineError> {
        let person = Self::normalise(email)?;
        let email = person.email.as_str();
        let looked_up = self
            .with_case(email, |c| !c.accounts.is_empty())
            .unwrap_or(false);
        if !looked_up {
            self.discover(email).await?;
        }
        let plan = self.plan(email, selection)?;
        let steps: Vec<PlannedStep> = plan
            .phases
            .iter()
            .flat_map(|p| {
                p.steps.iter().map(|g| PlannedStep {
                    phase: p.phase.number(),
                    key: g.key(),
                    kind: g.kind,
                    label: g.label.clone(),
                    manual: g.is_manual(),
                })
            })
            .collect();
        self.record(email, LedgerEvent::Planned { steps }).await?;
        self.emit(Event::Planned {
            email: email.into(),
            plan: plan.clone(),
        });

        let exec_done = AtomicBool::new(false);
        let wake = Notify::new();
        let scope: HashSet<String> = plan
            .phases
            .iter()
            .flat_map(|p| p.steps.iter().map(Grant::key))
            .collect();
        let exec = async {
            let r = self.execute(email, &plan, &wake).await;
            exec_done.store(true, Ordering::SeqCst);
            // Every connector's verification waits on it.
            wake.notify_waiters();
            wake.notify_one();
            r
        };
        let (exec_result, verify_result) =
            tokio::join!(exec, self.verify_loop(email, &scope, &exec_done, &wake));
        exec_result?;
        verify_result?;
        let summary = self
            .with_case(email, |c| c.summary(selection))
            .unwrap_or_default();
        self.record(
            email,
            LedgerEvent::Finished {
                summary: summary.clone(),
            },
        )
        .await?;
        self.emit(Event::Finished {
            email: email.into(),
            summary: summary.clone(),
        });
        Ok(summary)
    }

    /// Each app goes through the plan's phases on its own: an app's phase
    /// starts once that app's requests of the phase before are answered, so
    /// the order that matters (sessions and tokens before the account is
    /// closed, vendor rules) holds inside each app, and no app waits for
    /// another's pacing.
    pub(super) async fn execute(
        &self,
        email: &str,
        plan: &Plan,
        wake: &Notify,
    ) -> Result<(), EngineError> {
        let mut apps: Vec<&str> = Vec::new();
        for g in plan.phases.iter().flat_map(|p| &p.steps) {
            if !apps.contains(&g.connector.as_str()) {
                apps.push(&g.connector);
            }
        }
        // Progress is per phase across the apps.
        let done: Vec<AtomicUsize> = plan.phases.iter().map(|_| AtomicUsize::new(0)).collect();
        let jobs = apps
            .into_iter()
            .map(|app| self.execute_app(email, plan, app, &done, wake));
        for r in join_all(jobs).await {
            r?;
        }
        Ok(())
    }

    /// One app's steps of the plan, phase after phase. A manual step is
    /// recorded as required alongside: nothing is sent for it, so the app's
    /// next phase does not wait for it.
    async fn execute_app(
        &self,
        email: &str,
        plan: &Plan,
        app: &str,
        done: &[AtomicUsize],
        wake: &Notify,
    ) -> Result<(), EngineError> {
        let progress = |i: usize| {
            let phase = &plan.phases[i];
            let n = done[i].fetch_add(1, Ordering::SeqCst) + 1;
            self.emit(Event::PhaseProgress {
                email: email.into(),
                phase: phase.phase,
                done: n,
                total: phase.steps.len(),
            });
        };
        let manual = plan.phases.iter().enumerate().flat_map(|(i, phase)| {
            phase
                .steps
                .iter()
                .filter(|g| g.connector == app && g.is_manual())
                .map(move |g| (i, phase.phase, g))
        });
        let manual = join_all(manual.map(|(i, phase, g)| async move {
            let r = self.execute_one(email, phase, g, wake).await;
            progress(i);
            r
        }));
        let sent = async {
            for (i, phase) in plan.phases.iter().enumerate() {
                let steps: Vec<&Grant> = phase
                    .steps
                    .iter()
                    .filter(|g| g.connector == app && !g.is_manual())
                    .collect();
                // One flag per step, set once its request is answered. A
                // step waits only for the steps it names in `after` that
                // come before it in the phase (the plan puts them first; a
                // cycle is not waited on): everything else runs
                // concurrently.
                let answered: Vec<tokio::sync::watch::Sender<bool>> = steps
                    .iter()
                    .map(|_| tokio::sync::watch::channel(false).0)
                    .collect();
                let jobs = steps.iter().enumerate().map(|(j, g)| {
                    let waits: Vec<tokio::sync::watch::Receiver<bool>> = steps[..j]
                        .iter()
                        .enumerate()
                        .filter(|(_, p)| g.after.contains(&p.id))
                        .map(|(k, _)| answered[k].subscribe())
                        .collect();
                    let answered = &answered[j];
                    async move {
                        for mut w in waits {
                            let _ = w.wait_for(|d| *d).await;
                        }
                        let r = self.execute_one(email, phase.phase, g, wake).await;
                        answered.send_replace(true);
                        progress(i);
                        r
                    }
                });
                // Every request of this app's phase is answered before its
                // next phase starts.
                for r in join_all(jobs).await {
                    r?;
                }
            }
            Ok::<(), EngineError>(())
        };
        let (manual, sent) = tokio::join!(manual, sent);
        for r in manual {
            r?;
        }
        sent
    }

    pub(super) async fn execute_one(
        &self,
        email: &str,
        phase: Phase,
        g: &Grant,
        wake: &Notify,
    ) -> Result<(), EngineError> {
        let key = g.key();
        if let crate::model::Revocation::Manual { instructions } = &g.revocation {
            // Recorded once per case: a step listed as manual from the
            // start is `requested` once the ledger says it is required.
            let required = self
                .with_case(email, |c| c.entry(&key).map(|e| e.requested))
                .flatten()
                .unwrap_or(false);
            if !required {
                self.record(
                    email,
                    LedgerEvent::ManualRequired {
                        key: key.clone(),
                        grant: g.clone(),
                        instructions: instructions.clone(),
                    },
                )
                .await?;
                self.set_state(email, &key, GrantState::Manual, None);
            }
            return Ok(());
        }
        let (Some(c), Some(account)) = (
            self.connector(&g.connector).cloned(),
            self.with_case(email, |c| c.account(&g.connector).cloned())
                .flatten(),
        ) else {
            self.set_state(
                email,
                &key,
                GrantState::Failed {
                    reason: "no account to act on in this app".into(),
                },
                None,
            );
            return Ok(());
        };
        // Evidence first: the request is recorded before it is sent.
        self.record(
            email,
            LedgerEvent::RevokeRequested {
                key: key.clone(),
                phase: phase.number(),
                grant: g.clone(),
            },
        )
        .await?;
        self.set_state(email, &key, GrantState::Revoking, None);
        let result = c.revoke(&account, g).await;
        let answered = Utc::now();
        let (outcome, error, manual) = match &result {
            Ok(o) => (Some(*o), None, None),
            Err(ConnectorError::Refused { manual, .. }) => (
                None,
                Some(clean(&result.as_ref().unwrap_err().to_string())),
                Some(clean(manual)),
            ),
            Err(e) => (None, Some(clean(&e.to_string())), None),
        };
        self.record(
            email,
            LedgerEvent::ApiAnswer {
                key: key.clone(),
                outcome,
                error: error.clone(),
                manual: manual.clone(),
            },
        )
        .await?;
        let (state, answer) = answer_state(outcome, error.as_deref(), manual.as_deref(), answered);
        self.emit(Event::ApiAnswer {
            email: email.into(),
            key: key.clone(),
            answer: answer.clone(),
        });
        // A concurrent refresh may already have verified it.
        if self.state_of(email, &key) == Some(GrantState::Revoking) {
            self.set_state_since(email, &key, state, Some(answer), answered);
        }
        // Every connector's verification waits on it: a removal to confirm,
        // or the app's last answer (its early reads may start).
        wake.notify_waiters();
        wake.notify_one();
        self.emit_health(&c);
        Ok(())
    }

    /// Ticks off a manual step, or accepts a failed or unconfirmed grant
    /// after manual work, with a note: `acknowledged`.
    pub async fn manual_done(&self, email: &str, key: &str, note: &str) -> Result<(), EngineError> {
        let person = Self::normalise(email)?;
        let email = person.email.as_str();
        let state = self
            .with_case(email, |c| c.entry(key).map(|e| e.state.clone()))
            .ok_or_else(|| EngineError::NoCase(email.to_string()))?
            .ok_or_else(|| {
                EngineError::Invalid(format!("no grant `{}` in this case", clean(key)))
            })?;
        let is_manual = self
            .with_case(email, |c| c.entry(key).map(|e| e.grant.is_manual()))
            .flatten()
            .unwrap_or(false);
        if !(state.needs_attention() || (is_manual && state == GrantState::Live)) {
            return Err(EngineError::Invalid(format!(
                "`{}` is {}: only manual, failed or unconfirmed grants can be ticked off",
                clean(key),
                state.name()
            )));
        }
        let note = clean(note);
        self.record(
            email,
            LedgerEvent::ManualDone {
                key: key.to_string(),
                note: note.clone(),
                previous_state: state.to_string(),
            },
        )
        .await?;
        self.set_state(
            email,
            key,
            GrantState::Acknowledged {
                at: Utc::now(),
                note: Some(note),
            },
            None,
        );
        Ok(())
    }
}
