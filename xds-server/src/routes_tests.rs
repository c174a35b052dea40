//! The route table's `/v1/` part: providers only through `x-aimesh-cluster`, never by default.

use envoy_types::pb::envoy::config::route::v3 as rt;

use crate::validate::load_str;

fn route_table(yaml: &str) -> Vec<rt::Route> {
    let gw = load_str(yaml).unwrap_or_else(|e| panic!("{e:?}"));
    let cfg = super::routes(&gw).unwrap_or_else(|e| panic!("{e}"));
    cfg.virtual_hosts
        .into_iter()
        .flat_map(|v| v.routes)
        .collect()
}

fn prefix(r: &rt::Route) -> &str {
    match r.r#match.as_ref().and_then(|m| m.path_specifier.as_ref()) {
        Some(rt::route_match::PathSpecifier::Prefix(p)) => p,
        _ => "",
    }
}

/// The cluster a route sends to without any filter's choice (a fixed `cluster`).
fn fixed_cluster(r: &rt::Route) -> Option<&str> {
    match &r.action {
        Some(rt::route::Action::Route(a)) => match &a.cluster_specifier {
            Some(rt::route_action::ClusterSpecifier::Cluster(c)) => Some(c),
            _ => None,
        },
        _ => None,
    }
}

#[test]
fn v1_requests_reach_providers_only_through_the_cluster_a_filter_chose() {
    for default in ["", "default_provider: pub1\n"] {
        let routes = route_table(&format!(
            "providers:\n- {{name: pub1, kind: openai, models: [gpt-x]}}\n\
             - {{name: gpu1, kind: openai_compatible, base_url: 'http://10.0.0.1:8000', models: [private-llm]}}\n\
             {default}"
        ));
        let v1: Vec<&rt::Route> = routes
            .iter()
            .filter(|r| prefix(r) == "/" || prefix(r).starts_with("/v1"))
            .collect();
        assert!(
            v1.iter().all(|r| fixed_cluster(r).is_none()),
            "no /v1/ route may name a provider itself: {:?}",
            v1.iter().map(|r| &r.name).collect::<Vec<_>>()
        );
        assert!(v1.iter().all(|r| r
            .r#match
            .iter()
            .flat_map(|m| &m.headers)
            .all(|h| h.name != "x-aimesh-model")));
        let last = routes.last().map(|r| (r.name.as_str(), prefix(r)));
        assert_eq!(last, Some(("v1.unrouted", "/v1/")));
        assert!(matches!(
            routes.last().and_then(|r| r.action.as_ref()),
            Some(rt::route::Action::DirectResponse(d)) if d.status == 404
        ));
    }
}
