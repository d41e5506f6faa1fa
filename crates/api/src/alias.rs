//! Aliases: named pointers to a function's versions (`prod`, `staging`),
//! optionally splitting traffic across several versions by weight.
//!
//! A function is addressed as `name` (its latest version), `name@7` (a
//! version) or `name@prod` (an alias). Moving an alias is one atomic
//! change: a request sees the old routing or the new one, never a mix.

use serde::{Deserialize, Serialize};

/// Most versions one alias may split traffic across.
pub const MAX_ALIAS_TARGETS: usize = 10;
/// Most aliases one function may have.
pub const MAX_ALIASES_PER_FUNCTION: usize = 32;

/// One version an alias routes to, and its share of the requests in
/// percent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasTarget {
    pub version: u32,
    pub weight: u32,
}

/// An alias as stored and answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alias {
    pub namespace: String,
    pub function: String,
    pub name: String,
    /// The versions it routes to; weights sum to 100.
    pub routing: Vec<AliasTarget>,
    /// What it routed to before its last change (for rollback); empty for
    /// a new alias.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous: Vec<AliasTarget>,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    /// A gradual rollout moving this alias, running or finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
}

/// `POST …/aliases/{alias}/rollout`: shift the alias to version `to` in
/// steps, checking the new version's health after each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutStart {
    pub to: u32,
    /// The new version's share after each step, in percent, rising, the
    /// last 100. Default `[10, 50, 100]`.
    #[serde(default = "default_steps")]
    pub steps: Vec<u32>,
    /// How long each step runs before it is judged, in ms. Default
    /// 300 000 (5 minutes).
    #[serde(default = "default_every_ms")]
    pub every_ms: u64,
    /// The new version's highest tolerated share of failed invocations
    /// over a step (0.01 = 1 %). Default 0.01.
    #[serde(default = "default_max_error_rate")]
    pub max_error_rate: f64,
    /// The new version's highest tolerated 99th-percentile duration over
    /// a step, in ms. Default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p99_ms: Option<u64>,
}

fn default_steps() -> Vec<u32> {
    vec![10, 50, 100]
}
fn default_every_ms() -> u64 {
    300_000
}
fn default_max_error_rate() -> f64 {
    0.01
}

/// Shortest step of a rollout, in ms.
pub const MIN_ROLLOUT_STEP_MS: u64 = 100;

impl RolloutStart {
    /// Checks the settings.
    pub fn check(&self) -> Result<(), String> {
        if self.steps.is_empty() || self.steps.last() != Some(&100) {
            return Err("steps must end at 100 (percent), e.g. [10, 50, 100]".to_owned());
        }
        if self.steps.len() > 20
            || self.steps.windows(2).any(|w| w[0] >= w[1])
            || self.steps[0] == 0
        {
            return Err(format!(
                "steps must rise from above 0 to 100, at most 20 of them; got {:?}",
                self.steps
            ));
        }
        if self.every_ms < MIN_ROLLOUT_STEP_MS {
            return Err(format!(
                "every_ms must be at least {MIN_ROLLOUT_STEP_MS}, got {}",
                self.every_ms
            ));
        }
        if !(0.0..=1.0).contains(&self.max_error_rate) {
            return Err(format!(
                "max_error_rate is a fraction from 0 to 1 (0.01 = 1 %), got {}",
                self.max_error_rate
            ));
        }
        Ok(())
    }
}

/// Where a rollout stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    Running,
    /// Every step passed: the alias points at the new version alone.
    Done,
    /// A step failed its check: the alias is back where it started.
    RolledBack,
}

/// A rollout's plan and progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    pub to: u32,
    /// The version the alias pointed at when the rollout started.
    pub from: u32,
    pub steps: Vec<u32>,
    pub every_ms: u64,
    pub max_error_rate: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p99_ms: Option<u64>,
    /// The index in `steps` of the step running (or last run).
    pub step: usize,
    pub step_started_at_ms: u64,
    pub state: RolloutState,
    /// What each judged step saw, and why the rollout ended.
    #[serde(default)]
    pub log: Vec<String>,
}

impl Alias {
    /// The version for a request whose position in `0..100` is `bucket`:
    /// the targets take consecutive ranges as wide as their weights.
    pub fn pick(&self, bucket: u32) -> u32 {
        let mut upto = 0;
        for t in &self.routing {
            upto += t.weight;
            if bucket < upto {
                return t.version;
            }
        }
        self.routing.last().map_or(0, |t| t.version)
    }
}

/// `PUT …/aliases/{alias}`: one version, or a split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasSet {
    /// Every request to this version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// Or a split across versions, weights summing to 100.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routing: Vec<AliasTarget>,
}

impl AliasSet {
    /// The routing this asks for, checked: one version, or 1 to
    /// [`MAX_ALIAS_TARGETS`] distinct versions whose weights sum to 100.
    pub fn routing(&self) -> Result<Vec<AliasTarget>, String> {
        let routing = match (self.version, self.routing.is_empty()) {
            (Some(v), true) => vec![AliasTarget {
                version: v,
                weight: 100,
            }],
            (None, false) => self.routing.clone(),
            (Some(_), false) => {
                return Err("give either version or routing, not both".to_owned());
            }
            (None, true) => {
                return Err(
                    "give a version ({\"version\": 7}) or a split ({\"routing\": [{\"version\": 7, \"weight\": 90}, {\"version\": 8, \"weight\": 10}]})"
                        .to_owned(),
                );
            }
        };
        if routing.len() > MAX_ALIAS_TARGETS {
            return Err(format!(
                "an alias splits across at most {MAX_ALIAS_TARGETS} versions, not {}",
                routing.len()
            ));
        }
        let total: u32 = routing.iter().map(|t| t.weight.min(100)).sum();
        if total != 100 || routing.iter().any(|t| t.weight > 100) {
            return Err(format!(
                "the weights must sum to 100 (percent), they sum to {}",
                routing.iter().map(|t| u64::from(t.weight)).sum::<u64>()
            ));
        }
        for (i, t) in routing.iter().enumerate() {
            if t.version == 0 {
                return Err("versions are numbered from 1".to_owned());
            }
            if routing[..i].iter().any(|o| o.version == t.version) {
                return Err(format!("version {} is listed twice", t.version));
            }
        }
        Ok(routing.into_iter().filter(|t| t.weight > 0).collect())
    }
}

/// `GET …/aliases`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AliasList {
    pub aliases: Vec<Alias>,
}

/// Checks an alias name: 1 to 63 lower-case letters, digits and '-', not
/// all digits (`@7` is a version) and not `latest`.
pub fn check_alias_name(name: &str) -> Result<(), String> {
    crate::names::FunctionName::new(name)
        .map_err(|_| format!("invalid alias name {name:?}: use 1 to 63 lower-case letters, digits and '-', not starting or ending with '-'"))?;
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "invalid alias name {name:?}: a name of digits only would read as a version (@{name})"
        ));
    }
    if name == "latest" {
        return Err(
            "invalid alias name \"latest\": @latest always means the latest version".to_owned(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(version: u32, weight: u32) -> AliasTarget {
        AliasTarget { version, weight }
    }

    #[test]
    fn a_split_is_checked() {
        let one = AliasSet {
            version: Some(7),
            routing: Vec::new(),
        };
        assert_eq!(one.routing(), Ok(vec![t(7, 100)]));
        let split = AliasSet {
            version: None,
            routing: vec![t(7, 90), t(8, 10)],
        };
        assert_eq!(split.routing(), Ok(vec![t(7, 90), t(8, 10)]));
        for (bad, says) in [
            (vec![t(7, 90), t(8, 20)], "sum to 110"),
            (vec![t(7, 50), t(7, 50)], "listed twice"),
            (vec![t(0, 100)], "numbered from 1"),
        ] {
            let e = AliasSet {
                version: None,
                routing: bad,
            }
            .routing()
            .unwrap_err();
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn buckets_follow_the_weights() {
        let a = Alias {
            namespace: "d".into(),
            function: "f".into(),
            name: "prod".into(),
            routing: vec![t(7, 90), t(8, 10)],
            previous: Vec::new(),
            created_at_ms: 0,
            updated_at_ms: 0,
            rollout: None,
        };
        assert_eq!((0..100).filter(|b| a.pick(*b) == 7).count(), 90);
        assert_eq!(a.pick(99), 8);
    }

    #[test]
    fn alias_names() {
        assert!(check_alias_name("prod").is_ok());
        assert!(check_alias_name("v2-canary").is_ok());
        assert!(check_alias_name("7").unwrap_err().contains("version"));
        assert!(check_alias_name("latest").is_err());
        assert!(check_alias_name("Prod").is_err());
    }
}
