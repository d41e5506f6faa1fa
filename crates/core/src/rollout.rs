//! Gradual rollouts: an alias shifted to a new version step by step
//! (`nimbus rollout orders --to 8 --steps 10,50,100 --every 5m
//! --max-error-rate 1%`), rolled back on its own when the new version
//! fails a step's check.
//!
//! A controller task per running rollout sleeps until its step has run
//! `every_ms`, then judges the new version on the invocations it served
//! during the step (those among the function's newest [`MAX_QUERY_LIMIT`]
//! of the step): the share
//! that failed (any error code) and, if asked, their 99th-percentile
//! duration. Passing moves the alias to the next step's split; failing
//! points it back at the version it started from. The rollout's state
//! lives on the alias in the store, so a restarted server resumes it; a
//! hand-made move of the alias stops it.

use crate::dispatch::{Platform, read, write};
use crate::error::{Error, Result};
use crate::store::{InvocationQuery, MAX_QUERY_LIMIT};
use crate::time::now_ms;
use nimbus_api::alias::{Alias, AliasTarget, Rollout, RolloutStart, RolloutState};
use nimbus_api::{ErrorCode, Namespace};
use std::sync::{Arc, Weak};
use std::time::Duration;

type AliasKey = (String, String, String);

/// The alias routing for a step where `to` takes `share` percent.
fn routing(from: u32, to: u32, share: u32) -> Vec<AliasTarget> {
    if share >= 100 {
        vec![AliasTarget {
            version: to,
            weight: 100,
        }]
    } else {
        vec![
            AliasTarget {
                version: from,
                weight: 100 - share,
            },
            AliasTarget {
                version: to,
                weight: share,
            },
        ]
    }
}

fn internal(e: crate::store::StoreError, what: &str) -> Error {
    Error::internal(anyhow::Error::from(e).context(what.to_owned()))
}

impl Platform {
    /// Starts shifting alias `alias` of `function` to `start.to`.
    pub async fn start_rollout(
        self: &Arc<Self>,
        namespace: &Namespace,
        function: &str,
        alias: &str,
        start: RolloutStart,
    ) -> Result<Alias> {
        start
            .check()
            .map_err(|e| Error::bad_request(format!("rollout: {e}")))?;
        let ns = namespace.as_str();
        let key: AliasKey = (ns.to_owned(), function.to_owned(), alias.to_owned());
        let a = {
            let _guard = self.deploy_lock.lock().await;
            let current = read(&self.aliases).get(&key).cloned().ok_or_else(|| {
                Error::not_found(format!(
                    "function {ns}/{function} has no alias {alias:?}; create it first (nimbus alias set {function} {alias} VERSION)"
                ))
            })?;
            if current
                .rollout
                .as_ref()
                .is_some_and(|r| r.state == RolloutState::Running)
            {
                return Err(Error::new(
                    ErrorCode::Conflict,
                    format!("alias {alias} of {ns}/{function} is already being rolled out"),
                ));
            }
            let [only] = current.routing.as_slice() else {
                return Err(Error::new(
                    ErrorCode::Conflict,
                    format!(
                        "alias {alias} of {ns}/{function} splits traffic already; point it at one version first"
                    ),
                ));
            };
            let from = only.version;
            if from == start.to {
                return Err(Error::bad_request(format!(
                    "alias {alias} already points at version {from}"
                )));
            }
            let exists = self
                .store
                .version(ns, function, start.to)
                .await
                .map_err(|e| internal(e, "read a version"))?
                .is_some();
            if !exists {
                return Err(Error::bad_request(format!(
                    "rollout: function {ns}/{function} has no version {}",
                    start.to
                )));
            }
            let now = now_ms();
            let mut a = (*current).clone();
            a.previous = a.routing.clone();
            a.routing = routing(from, start.to, start.steps[0]);
            a.updated_at_ms = now;
            a.rollout = Some(Rollout {
                to: start.to,
                from,
                steps: start.steps,
                every_ms: start.every_ms,
                max_error_rate: start.max_error_rate,
                max_p99_ms: start.max_p99_ms,
                step: 0,
                step_started_at_ms: now,
                state: RolloutState::Running,
                log: Vec::new(),
            });
            self.save_alias(a.clone()).await?;
            a
        };
        self.spawn_rollout(key);
        Ok(a)
    }

    /// Stores an alias and swaps it in (the deploy lock held).
    async fn save_alias(&self, a: Alias) -> Result<()> {
        let key = (a.namespace.clone(), a.function.clone(), a.name.clone());
        self.store
            .put_alias(a.clone())
            .await
            .map_err(|e| internal(e, "store an alias"))?;
        write(&self.aliases).insert(key, Arc::new(a));
        Ok(())
    }

    /// Runs the controller of the rollout on alias `key` until it ends.
    pub(crate) fn spawn_rollout(self: &Arc<Self>, key: AliasKey) {
        let weak: Weak<Platform> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(p) = weak.upgrade() else { return };
                let Some(r) = p.running_rollout(&key) else {
                    return;
                };
                let due = r.step_started_at_ms.saturating_add(r.every_ms);
                drop(p);
                let wait = due.saturating_sub(now_ms());
                tokio::time::sleep(Duration::from_millis(wait)).await;
                let Some(p) = weak.upgrade() else { return };
                match p.advance_rollout(&key, &r).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => {
                        tracing::warn!(
                            namespace = %key.0,
                            function = %key.1,
                            alias = %key.2,
                            error = %e,
                            "a rollout step could not be judged; trying again"
                        );
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
    }

    fn running_rollout(&self, key: &AliasKey) -> Option<Rollout> {
        read(&self.aliases)
            .get(key)
            .and_then(|a| a.rollout.clone())
            .filter(|r| r.state == RolloutState::Running)
    }

    /// Judges the step `seen` started and moves the alias on or back.
    /// Returns whether the rollout goes on.
    async fn advance_rollout(&self, key: &AliasKey, seen: &Rollout) -> Result<bool> {
        // Records are written in batches: what the step served is in the
        // store once the writer has flushed.
        self.recorder.flush().await;
        let verdict = self.judge(key, seen).await?;
        let _guard = self.deploy_lock.lock().await;
        let Some(current) = read(&self.aliases).get(key).cloned() else {
            return Ok(false);
        };
        // Moved by hand, or another rollout: this one is over.
        let Some(r) = current.rollout.clone().filter(|r| {
            r.state == RolloutState::Running
                && r.step == seen.step
                && r.step_started_at_ms == seen.step_started_at_ms
        }) else {
            return Ok(false);
        };
        let mut a = (*current).clone();
        let mut r = r;
        let now = now_ms();
        let share = r.steps[r.step];
        let go_on = match verdict {
            Err(why) => {
                r.log.push(format!(
                    "step {share} %: {why}; rolled back to version {}",
                    r.from
                ));
                r.state = RolloutState::RolledBack;
                a.previous = a.routing.clone();
                a.routing = routing(r.from, r.from, 100);
                tracing::warn!(
                    namespace = %key.0,
                    function = %key.1,
                    alias = %key.2,
                    reason = %why,
                    "rollout rolled back"
                );
                false
            }
            Ok(summary) => {
                r.log.push(format!("step {share} %: {summary}"));
                if r.step + 1 >= r.steps.len() {
                    r.state = RolloutState::Done;
                    a.previous = routing(r.from, r.from, 100);
                    a.routing = routing(r.from, r.to, 100);
                    false
                } else {
                    r.step += 1;
                    r.step_started_at_ms = now;
                    a.routing = routing(r.from, r.to, r.steps[r.step]);
                    true
                }
            }
        };
        a.updated_at_ms = now;
        a.rollout = Some(r);
        self.save_alias(a).await?;
        Ok(go_on)
    }

    /// The new version's health over a step: `Ok(summary)` when it passes,
    /// `Err(reason)` when it fails.
    async fn judge(
        &self,
        key: &AliasKey,
        r: &Rollout,
    ) -> Result<std::result::Result<String, String>> {
        let records = self
            .store
            .invocations(InvocationQuery {
                namespace: Some(key.0.clone()),
                function: Some(key.1.clone()),
                since_ms: Some(r.step_started_at_ms),
                limit: MAX_QUERY_LIMIT,
            })
            .await
            .map_err(|e| internal(e, "read the step's invocations"))?;
        let mine: Vec<_> = records.iter().filter(|x| x.version == r.to).collect();
        if mine.is_empty() {
            return Ok(Ok(format!("version {} served no invocation", r.to)));
        }
        let failed = mine.iter().filter(|x| x.error_code.is_some()).count();
        let rate = failed as f64 / mine.len() as f64;
        let mut durations: Vec<u64> = mine.iter().map(|x| x.duration_us).collect();
        durations.sort_unstable();
        let p99_ms = durations[(durations.len() * 99).div_ceil(100).saturating_sub(1)] / 1000;
        let summary = format!(
            "{failed} of {} invocations of version {} failed ({:.1} %), p99 {p99_ms} ms",
            mine.len(),
            r.to,
            rate * 100.0
        );
        if rate > r.max_error_rate {
            return Ok(Err(format!(
                "{summary}, over max_error_rate {:.1} %",
                r.max_error_rate * 100.0
            )));
        }
        if let Some(max) = r.max_p99_ms
            && p99_ms > max
        {
            return Ok(Err(format!("{summary}, over max_p99_ms {max}")));
        }
        Ok(Ok(summary))
    }

    /// Resumes the rollouts that were running when the server stopped.
    pub(crate) fn resume_rollouts(self: &Arc<Self>) {
        let running: Vec<AliasKey> = read(&self.aliases)
            .iter()
            .filter(|(_, a)| {
                a.rollout
                    .as_ref()
                    .is_some_and(|r| r.state == RolloutState::Running)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in running {
            self.spawn_rollout(key);
        }
    }
}
