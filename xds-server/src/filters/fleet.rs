//! Fleet-wide limits (`limits.store: redis`): gateway.yaml's rules, keys' own limits and the
//! budgets as token-accounting's `fleet` rules, and the cluster of the limits service.

use aimesh_config::fleet::{FleetConfig, FleetRule, Scope};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;

use crate::model::Gateway;
use crate::validate::{parse_duration_ms, parse_url};

/// The Envoy cluster of the limits service.
pub const CLUSTER: &str = "aimesh_limits";

/// `*` (or nothing) means each one on its own counter.
fn named(v: Option<&String>) -> Option<String> {
    v.filter(|n| n.as_str() != "*").cloned()
}

/// Token-accounting's fleet section. A rule naming no key, team, subject or model counts each
/// key on its own, as the local default does; a team rule counts the team as a whole.
pub fn config(gw: &Gateway) -> FleetConfig {
    let mut rules = Vec::new();
    for l in gw.limits.iter() {
        let (scope, name) = if let Some(k) = &l.key {
            (Scope::Key, Some(k.clone()))
        } else if let Some(t) = &l.team {
            (Scope::Team, Some(t.clone()))
        } else if l.subject.is_some() {
            (Scope::Subject, named(l.subject.as_ref()))
        } else if l.model.is_some() {
            (Scope::Model, named(l.model.as_ref()))
        } else {
            (Scope::Key, None)
        };
        rules.push(FleetRule {
            scope: Some(scope),
            name,
            rpm: l.requests_per_minute,
            tpm: l.tokens_per_minute,
            max_concurrent: l.max_concurrent,
            ..FleetRule::default()
        });
    }
    for k in &gw.keys {
        if k.requests_per_minute.is_some() || k.max_concurrent.is_some() {
            rules.push(FleetRule {
                scope: Some(Scope::Key),
                name: Some(k.id.clone()),
                rpm: k.requests_per_minute,
                max_concurrent: k.max_concurrent,
                ..FleetRule::default()
            });
        }
    }
    for b in &gw.budgets {
        let (scope, name) = match (&b.key, &b.team) {
            (Some(k), _) => (Scope::Key, Some(k.clone())),
            (None, Some(t)) => (Scope::Team, Some(t.clone())),
            (None, None) => (Scope::Key, None),
        };
        let day = b.period == crate::model::BudgetPeriod::Day;
        rules.push(FleetRule {
            scope: Some(scope),
            name,
            daily_usd: day.then_some(b.usd),
            monthly_usd: (!day).then_some(b.usd),
            ..FleetRule::default()
        });
    }
    FleetConfig {
        cluster: CLUSTER.to_string(),
        timeout_ms: gw
            .limits
            .timeout
            .as_deref()
            .and_then(|t| parse_duration_ms(t).ok())
            .unwrap_or_else(aimesh_config::fleet::default_timeout_ms),
        failure: gw.limits.failure,
        default_max_tokens: gw
            .limits
            .default_max_tokens
            .unwrap_or_else(aimesh_config::fleet::default_max_tokens),
        rules,
    }
}

/// The limits service's cluster, when the counts are fleet-wide.
pub fn cluster(gw: &Gateway) -> Result<Option<Cluster>, String> {
    if !gw.limits.fleet() {
        return Ok(None);
    }
    let url = gw
        .limits
        .service
        .as_deref()
        .ok_or("limits.service: required with store: redis")?;
    Ok(Some(crate::resources::hosted_cluster(
        CLUSTER,
        &parse_url(url)?,
        1000,
    )))
}
